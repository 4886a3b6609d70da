"""The API's rules for a comment and its annotations, checked before anything is sent.

The comment's rules are the one schema of :mod:`airflow_provider_cm.api.comment_schema`, which the
emulator checks requests with too; the annotations' rules come from the API reference's
annotations (3.5) and limits (4) sections. A record that breaks one is refused with a
:class:`RecordError` naming the field, so the upload fails before any comment is billed rather
than half way through.

Normalisations, all documented: those of the schema (timestamps sent as RFC 3339 in UTC, a
timestamp without an offset read in the zone of a :class:`TimestampRule`, blank ``string:`` user
properties dropped, fields the API does not define left out), and a label name given as a list of
levels is joined with ``" > "``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import msgspec

from airflow_provider_cm.api.comment_schema import (
    MAX_ADDRESS,
    MAX_ATTACHMENT_FIELD,
    MAX_ATTACHMENTS,
    MAX_LANGUAGE,
    MAX_MESSAGES,
    MAX_RECIPIENTS,
    MAX_TEXT,
    RecordError,
    TimestampRule,
    check_comment,
    check_comment_id,
    is_finite_number,
    property_kind,
    validate_user_properties,
)
from airflow_provider_cm.api.labels import LEVEL_SEPARATOR

__all__ = [
    "MAX_ADDRESS",
    "MAX_ATTACHMENTS",
    "MAX_ATTACHMENT_FIELD",
    "MAX_LANGUAGE",
    "MAX_MESSAGES",
    "MAX_RECIPIENTS",
    "MAX_TEXT",
    "check_comment_id",
    "check_sendable",
    "checked_label_name",
    "is_finite_number",
    "normalise_entities",
    "normalise_labelling",
    "property_kind",
    "validate_comment",
    "validate_user_properties",
]

MAX_LABEL_PARTS = 64
MAX_LABEL_PART = 64
MAX_GROUP_NAME = 64

_LABEL_KEYS = frozenset({"name", "sentiment", "metadata"})
_GROUP_KEYS = frozenset({"group", "assigned", "dismissed", "predicted"})
_LEGACY_GROUP_KEYS = frozenset({"assigned", "dismissed"})
_LOOSE_SEPARATOR = re.compile(r"\s*>\s*")


# -- the comment ----------------------------------------------------------------------------------


def validate_comment(comment: Any, timestamps: TimestampRule | None = None) -> dict[str, Any]:
    """Check a comment object against the API's rules (:mod:`airflow_provider_cm.api.comment_schema`)
    and return it normalised, as it is sent.

    :param comment: the ``comment`` of a record.
    :param timestamps: how to read timestamps (default: RFC 3339, no offset meaning UTC).
    :raises RecordError: naming the first offending field.
    """
    checked: dict[str, Any] = msgspec.to_builtins(check_comment(comment, timestamps))
    return checked


# -- annotations ----------------------------------------------------------------------------------


def checked_label_name(name: Any, where: str) -> str:
    """A label name in the documented form: levels of 1-64 characters joined by ``" > "``.

    A list of levels is joined; surrounding blanks of the whole name are dropped.

    :raises RecordError: for an empty level, too many or too long levels, or a ``>`` that is not
        the separator (``"Amount>1000"``), which would otherwise be read as a hierarchy or not.
    """
    if isinstance(name, list):
        if not name or not all(isinstance(p, str) for p in name):
            raise RecordError(where, "must be a list of non-empty strings")
        name = LEVEL_SEPARATOR.join(name)
    if not isinstance(name, str) or not name.strip():
        raise RecordError(where, "must be a non-empty string such as 'Parent > Child'")
    name = name.strip()
    parts = name.split(LEVEL_SEPARATOR)
    for part in parts:
        if ">" in part:
            hierarchy = _LOOSE_SEPARATOR.sub(LEVEL_SEPARATOR, name)
            raise RecordError(
                where,
                f"{name!r} has a '>' that is not the level separator ' > ' (a space on each side): write "
                f"{hierarchy!r} for a hierarchy, or leave the '>' out",
            )
        if not part or part != part.strip() or len(part) > MAX_LABEL_PART:
            raise RecordError(
                where,
                f"{name!r} is not a valid label name: each level must be 1 to {MAX_LABEL_PART} characters "
                "without surrounding spaces, levels joined by ' > '",
            )
    if len(parts) > MAX_LABEL_PARTS:
        raise RecordError(where, f"{name!r} has {len(parts)} levels; the API takes at most {MAX_LABEL_PARTS}")
    return name


def _label(label: Any, where: str) -> dict[str, Any]:
    """Check one label and return it with its name in the documented form."""
    if isinstance(label, str):
        label = {"name": label}
    if not isinstance(label, dict):
        raise RecordError(where, "must be a label object with a 'name'")
    if not _LABEL_KEYS.issuperset(label):
        raise RecordError(where, f"unknown label field(s): {', '.join(sorted(map(str, set(label) - _LABEL_KEYS)))}")
    out: dict[str, Any] = {"name": checked_label_name(label.get("name"), f"{where}.name")}
    sentiment = label.get("sentiment")
    if sentiment is not None:
        if sentiment not in ("positive", "negative"):
            raise RecordError(f"{where}.sentiment", "must be 'positive' or 'negative'")
        out["sentiment"] = sentiment
    if label.get("metadata") is not None:
        if not isinstance(label["metadata"], dict):
            raise RecordError(f"{where}.metadata", "must be an object")
        out["metadata"] = label["metadata"]
    return out


def _group(group: Any, where: str, *, legacy: bool) -> dict[str, Any]:
    if not isinstance(group, dict):
        raise RecordError(where, "must be a label group object")
    unknown = set(group) - (_LEGACY_GROUP_KEYS if legacy else _GROUP_KEYS)
    if unknown or (legacy and not set(group) & _LEGACY_GROUP_KEYS):
        raise RecordError(
            where,
            "unknown labelling shape: expected a list of groups "
            "[{'group': 'default', 'assigned': [...], 'dismissed': [...]}] "
            "or the legacy object {'assigned': [...], 'dismissed': [...]}"
            + (f"; unknown key(s): {', '.join(sorted(map(str, unknown)))}" if unknown else ""),
        )
    name = group.get("group", "default")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_GROUP_NAME:
        raise RecordError(f"{where}.group", f"must be a group name of 1 to {MAX_GROUP_NAME} characters")
    out: dict[str, Any] = {"group": name}
    for kind in ("assigned", "dismissed"):
        if kind in group:
            labels = group[kind]
            if not isinstance(labels, list):
                raise RecordError(f"{where}.{kind}", "must be a list of labels")
            out[kind] = [_label(label, f"{where}.{kind}[{i}]") for i, label in enumerate(labels)]
    return out


def normalise_labelling(labelling: Any) -> list[dict[str, Any]] | None:
    """Both accepted labelling forms as a list of groups; ``None`` stays ``None``."""
    if labelling is None:
        return None
    if isinstance(labelling, dict):
        return [_group(labelling, "labelling", legacy=True)]
    if isinstance(labelling, list):
        return [_group(group, f"labelling[{i}]", legacy=False) for i, group in enumerate(labelling)]
    raise RecordError(
        "labelling",
        "unknown labelling shape: expected a list of label groups or a legacy {'assigned': [...]} object",
    )


def normalise_entities(entities: Any) -> dict[str, Any] | None:
    """Check ``{"assigned": [...], "dismissed": [...]}`` entities (each with a name and a span)."""
    if entities is None:
        return None
    if not isinstance(entities, dict) or set(entities) - {"assigned", "dismissed", "predicted"}:
        raise RecordError("entities", "must be an object with 'assigned' and/or 'dismissed' lists")
    out: dict[str, Any] = {}
    for kind in ("assigned", "dismissed"):
        if kind not in entities:
            continue
        values = entities[kind]
        if not isinstance(values, list):
            raise RecordError(f"entities.{kind}", "must be a list")
        for i, entity in enumerate(values):
            where = f"entities.{kind}[{i}]"
            if not isinstance(entity, dict) or not isinstance(entity.get("name"), str):
                raise RecordError(where, "must be an entity object with a 'name'")
            if "span" not in entity and "spans" not in entity:
                raise RecordError(where, "needs a 'span' or 'spans'")
        out[kind] = values
    return out or None


# -- values JSON cannot carry ---------------------------------------------------------------------


def check_sendable(value: Any, root: str = "") -> None:
    """Refuse a value that cannot be sent as JSON text: a non-finite number or a lone surrogate.

    ``1e400`` reads as infinity and would go out as the non-JSON word ``Infinity``; a lone
    ``\\ud800`` escape reads as a string UTF-8 cannot encode. Walks without recursion, so any
    depth the JSON reader accepted is fine.

    :raises RecordError: naming the field.
    """
    for path, item in _walk(value, root):
        if isinstance(item, float) and not math.isfinite(item):
            raise RecordError(path or "(record)", "is a number too large for JSON (it would be sent as Infinity)")
        if isinstance(item, str) and not _encodable(item):
            raise RecordError(path or "(record)", "holds a lone UTF-16 surrogate (such as \\ud800), not a character")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk(value: Any, root: str) -> Iterator[tuple[str, Any]]:
    stack: list[tuple[str, Any]] = [(root, value)]
    while stack:
        path, item = stack.pop()
        yield path, item
        if isinstance(item, dict):
            for key, child in item.items():
                yield f"{path}[{key!r}]", key
                stack.append((_child_path(path, key), child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))


def _child_path(path: str, key: str) -> str:
    if key.isidentifier() and _encodable(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"
