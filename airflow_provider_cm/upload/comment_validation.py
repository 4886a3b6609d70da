"""The API's rules for a comment and its annotations, checked before anything is sent.

Every rule comes from the API reference's comment object (3.4.1), annotations (3.5) and limits
(4) sections. A record that breaks one is refused with a :class:`RecordError` naming the field,
so the upload fails before any comment is billed rather than half way through.

Normalisations, all documented: timestamps are sent as RFC 3339 in UTC (``...Z``); a timestamp
without an offset is read in the zone of a :class:`TimestampRule` (UTC unless the caller says
otherwise); a ``string:`` user property whose value is empty or blank is dropped (as the official
client does); a label name given as a list of levels is joined with ``" > "``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone
from typing import Any

from airflow_provider_cm.labels import LEVEL_SEPARATOR

MAX_MESSAGES = 2048
MAX_TEXT = 65536
MAX_ADDRESS = 512
MAX_RECIPIENTS = 2048
MAX_LANGUAGE = 8
MAX_ATTACHMENTS = 128
MAX_ATTACHMENT_FIELD = 256
MAX_LABEL_PARTS = 64
MAX_LABEL_PART = 64
MAX_GROUP_NAME = 64

_SERVER_FIELDS = frozenset({"uid", "created_at", "has_annotations"})
_TEXT_PARTS = ("subject", "body", "signature")
_TEXT_FIELDS = ("text", "translated_from", "text_markup", "translated_from_markup")
_RECIPIENTS = ("to", "cc", "bcc")
_LABEL_KEYS = frozenset({"name", "sentiment", "metadata"})
_GROUP_KEYS = frozenset({"group", "assigned", "dismissed", "predicted"})
_LEGACY_GROUP_KEYS = frozenset({"assigned", "dismissed"})
_TEXT_FORMATS = ("markdown", "plain")
_LOOSE_SEPARATOR = re.compile(r"\s*>\s*")
#: RFC 3339 date-time (section 5.6); the offset is optional here, see :class:`TimestampRule`.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))?",
    re.ASCII,
)


#: ``comment.messages[i]`` for every index the API takes, built once.
_MESSAGE_PATHS = [f"comment.messages[{i}]" for i in range(MAX_MESSAGES)]


class RecordError(ValueError):
    """One problem with one record: the field (a dotted path) and what is wrong."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(message)
        self.field = field_path
        self.message = message


# -- timestamps -----------------------------------------------------------------------------------


@dataclass
class TimestampRule:
    """How timestamps are read: RFC 3339 only, and the zone of those without an offset.

    :param zone: the zone a timestamp without an offset (``2026-10-01T12:00:00``) is read in;
        ``None`` refuses such timestamps.
    :param naive: how many timestamps were read in ``zone`` so far (for one log line).
    """

    zone: tzinfo | None = dt_timezone.utc
    naive: int = 0

    def normalise(self, value: Any, field_path: str) -> str:
        """Check an RFC 3339 date-time and return it in UTC as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.

        Fractions of a second beyond microseconds are cut.

        :raises RecordError: for anything else, e.g. ``2026-10-01 12:00:00Z`` (a space),
            ``20261001T120000Z`` (basic format), ``2026-10-01T12:00Z`` (no seconds) or
            ``2026-W40-4T12:00:00Z`` (week date).
        """
        if not isinstance(value, str):
            raise RecordError(field_path, "must be an RFC 3339 date-time string such as '2026-10-01T12:00:00Z'")
        match = _RFC3339.fullmatch(value)
        if match is None:
            raise RecordError(
                field_path,
                f"{value!r} is not an RFC 3339 date-time: write it as YYYY-MM-DDTHH:MM:SS with an optional "
                "fraction and a 'Z' or '+HH:MM' offset, e.g. '2026-10-01T12:00:00Z'",
            )
        if match.group(7) is None and match.group(8) == "Z" and value[10] == "T":
            # Already in the form returned (the common case): the date-time only needs to exist.
            try:
                datetime.fromisoformat(value[:-1])
                return value
            except ValueError:
                pass  # said below, as for any other form
        year, month, day, hour, minute, second, fraction = match.group(1, 2, 3, 4, 5, 6, 7)
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        try:
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
            if match.group(8):
                moment = moment.replace(tzinfo=dt_timezone.utc)
            elif match.group(9):
                moment = moment.replace(tzinfo=_offset(match[9], match[10], match[11], value, field_path))
            else:
                moment = self._in_zone(moment, value, field_path)
            utc = moment.astimezone(dt_timezone.utc)
        except RecordError:
            raise
        except (ValueError, OverflowError) as exc:  # day 31 of a 30-day month; beyond year 1 to 9999 in UTC
            raise RecordError(field_path, f"{value!r} is not a valid date-time: {exc}") from None
        return utc.replace(tzinfo=None).isoformat() + "Z"

    def _in_zone(self, moment: datetime, value: str, field_path: str) -> datetime:
        if self.zone is None:
            raise RecordError(field_path, f"{value!r} has no UTC offset: add 'Z' or '+HH:MM', or pass timezone")
        local = moment.replace(tzinfo=self.zone)
        utc = local.astimezone(dt_timezone.utc)
        if utc.astimezone(self.zone).replace(tzinfo=None) != moment:
            raise RecordError(field_path, f"{value!r} does not exist in {self.zone} (a daylight-saving gap)")
        if local.replace(fold=1).utcoffset() != local.utcoffset():
            raise RecordError(
                field_path, f"{value!r} happens twice in {self.zone} (clocks go back): add its UTC offset"
            )
        self.naive += 1
        return local


def _offset(sign: str, hours: str, minutes: str, value: str, field_path: str) -> tzinfo:
    if int(hours) > 23 or int(minutes) > 59:
        raise RecordError(field_path, f"{value!r} has an invalid UTC offset")
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return dt_timezone(-delta if sign == "-" else delta)


# -- scalars --------------------------------------------------------------------------------------


def _check_string(value: Any, field_path: str, low: int, high: int) -> None:
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise RecordError(field_path, f"must be a string of {low} to {high} characters")


def check_comment_id(value: Any) -> str:
    """A comment id the per-comment routes can address (``.../comments/<id>``, ``.../labellings/<uid>``).

    The API lets the client choose any string (reference 1.4); the hook percent-encodes it in a
    path, so ``/``, ``?``, ``#`` and spaces are fine. What no URL path can carry is refused:
    an empty or blank id, ``.`` and ``..`` (removed by path normalisation) and control characters.

    :raises RecordError: naming ``comment.id``.
    """
    if value is None:
        raise RecordError("comment.id", "is missing")
    if not isinstance(value, str) or not value.strip():
        raise RecordError("comment.id", "must be a non-empty string")
    if value in (".", ".."):
        raise RecordError("comment.id", f"{value!r} cannot be used: a URL path cannot address it")
    control = None if value.isprintable() else next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise RecordError(
            "comment.id", f"holds the control character {control!r}: a URL path cannot address the comment"
        )
    return value


def is_finite_number(value: Any) -> bool:
    """A JSON number the API can read: an int or a finite float, not a bool."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


# -- the comment ----------------------------------------------------------------------------------


def validate_comment(comment: Any, timestamps: TimestampRule | None = None) -> dict[str, Any]:
    """Check a comment object against the API's rules and return it normalised.

    :param comment: the ``comment`` of a record.
    :param timestamps: how to read timestamps (default: RFC 3339, no offset meaning UTC).
    :raises RecordError: naming the first offending field.
    """
    if not isinstance(comment, dict):
        raise RecordError("comment", "must be an object")
    rule = timestamps or TimestampRule()
    comment = dict(comment)
    if not _SERVER_FIELDS.isdisjoint(comment):
        for name in _SERVER_FIELDS:
            comment.pop(name, None)
    check_comment_id(comment.get("id"))
    if "timestamp" not in comment:
        raise RecordError("comment.timestamp", "is missing")
    comment["timestamp"] = rule.normalise(comment["timestamp"], "comment.timestamp")
    comment["messages"] = _messages(comment.get("messages"), rule)
    _check_optional_fields(comment)
    if comment.get("user_properties") is not None:
        comment["user_properties"] = validate_user_properties(comment["user_properties"])
    return comment


def _check_optional_fields(comment: dict[str, Any]) -> None:
    if comment.get("thread_id") is not None and not isinstance(comment["thread_id"], str):
        raise RecordError("comment.thread_id", "must be a string")
    if comment.get("text_format") is not None and comment["text_format"] not in _TEXT_FORMATS:
        raise RecordError("comment.text_format", "must be 'markdown' or 'plain'")
    if comment.get("attachments") is not None:
        _check_attachments(comment["attachments"])


def _messages(messages: Any, rule: TimestampRule) -> list[Any]:
    if messages is None:
        raise RecordError("comment.messages", "is missing")
    if not isinstance(messages, list) or not messages:
        raise RecordError("comment.messages", "must be a non-empty list")
    if len(messages) > MAX_MESSAGES:
        raise RecordError("comment.messages", f"has {len(messages)} messages; the API takes at most {MAX_MESSAGES}")
    return [_message(message, _MESSAGE_PATHS[i], rule) for i, message in enumerate(messages)]


def _message(message: Any, where: str, rule: TimestampRule) -> Any:
    if type(message) is dict and len(message) == 1:
        body = message.get("body")
        if type(body) is dict and len(body) == 1 and type(text := body.get("text")) is str and len(text) <= MAX_TEXT:
            return message  # the common case, checked at once: a body with a text and nothing else
    if not isinstance(message, dict):
        raise RecordError(where, "must be an object")
    _check_text(message.get("body"), f"{where}.body")
    if len(message) == 1:
        return message  # the common case: a body and nothing else
    for part in ("subject", "signature"):
        if message.get(part) is not None:
            _check_text(message[part], f"{where}.{part}")
    if message.get("from") is not None:
        _check_string(message["from"], f"{where}.from", 1, MAX_ADDRESS)
    for recipients in _RECIPIENTS:
        if message.get(recipients) is not None:
            _check_recipients(message[recipients], f"{where}.{recipients}")
    if message.get("language") is not None:
        _check_string(message["language"], f"{where}.language", 1, MAX_LANGUAGE)
    if message.get("sent_at") is not None:
        message = {**message, "sent_at": rule.normalise(message["sent_at"], f"{where}.sent_at")}
    return message


def _check_text(container: Any, where: str) -> None:
    """Check a message part: an object with a ``text`` string, each text field within the limit."""
    if not isinstance(container, dict):
        raise RecordError(where, "must be an object with a 'text' string")
    if not isinstance(container.get("text"), str):
        raise RecordError(f"{where}.text", "must be a string")
    for name in _TEXT_FIELDS:
        value = container.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise RecordError(f"{where}.{name}", "must be a string")
        if len(value) > MAX_TEXT:
            raise RecordError(f"{where}.{name}", f"is {len(value)} characters long; the API takes at most {MAX_TEXT}")


def _check_recipients(values: Any, where: str) -> None:
    if not isinstance(values, list):
        raise RecordError(where, "must be a list of addresses")
    if len(values) > MAX_RECIPIENTS:
        raise RecordError(where, f"has {len(values)} addresses; the API takes at most {MAX_RECIPIENTS}")
    for index, value in enumerate(values):
        _check_string(value, f"{where}[{index}]", 1, MAX_ADDRESS)


def _check_attachments(attachments: Any) -> None:
    if not isinstance(attachments, list):
        raise RecordError("comment.attachments", "must be a list of attachment objects")
    if len(attachments) > MAX_ATTACHMENTS:
        raise RecordError(
            "comment.attachments", f"has {len(attachments)} attachments; the API takes at most {MAX_ATTACHMENTS}"
        )
    for index, attachment in enumerate(attachments):
        where = f"comment.attachments[{index}]"
        if not isinstance(attachment, dict):
            raise RecordError(where, "must be an object with 'name', 'size' and 'content_type'")
        _check_string(attachment.get("name"), f"{where}.name", 0, MAX_ATTACHMENT_FIELD)
        _check_string(attachment.get("content_type"), f"{where}.content_type", 0, MAX_ATTACHMENT_FIELD)
        size = attachment.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RecordError(f"{where}.size", "must be a whole number of bytes (0 or more)")
        for name in ("attachment_reference", "content_hash"):
            if attachment.get(name) is not None and not isinstance(attachment[name], str):
                raise RecordError(f"{where}.{name}", "must be a string")


def validate_user_properties(properties: Any) -> dict[str, Any]:
    """Check ``string:``/``number:`` keyed properties; blank string values are dropped.

    :raises RecordError: for a key without its prefix, or a value of the wrong type (a number
        must be finite).
    """
    if not isinstance(properties, dict):
        raise RecordError("comment.user_properties", "must be an object")
    out: dict[str, Any] = {}
    for key, value in properties.items():
        kind = property_kind(key)
        if kind == "string" and isinstance(value, str):
            if value and not value.isspace():
                out[key] = value
        elif kind == "number" and is_finite_number(value):
            out[key] = value
        else:
            where = f"comment.user_properties[{key!r}]"
            if kind is None:
                raise RecordError(where, "key must start with 'string:' or 'number:' followed by a name")
            if kind == "string":
                raise RecordError(where, "must be a string (key starts with 'string:')")
            raise RecordError(where, "must be a finite number (key starts with 'number:')")
    return out


def property_kind(key: Any) -> str | None:
    """``"string"`` or ``"number"`` for a well-formed user-property key, else ``None``."""
    if isinstance(key, str) and len(key) > 7:  # both prefixes are 7 characters long
        if key.startswith("string:"):
            return "string"
        if key.startswith("number:"):
            return "number"
    return None


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
