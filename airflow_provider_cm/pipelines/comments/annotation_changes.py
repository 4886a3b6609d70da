"""Whether writing a record's annotations would change what a dataset holds for its comment.

The write (``POST .../labellings/<uid>``, reference section 3.5) carries up to three kinds:
``labelling`` (label groups), ``entities`` and ``moon_forms``. A kind left out of the body is left
as it is; a kind in the body replaces what is stored, an empty list removing it. So a rerun needs
to write a comment only when some kind it carries differs from what the dataset holds now
(``GET .../labellings?id=<uid>``). Reading both sides the same way:

* label groups are compared by name (``"default"`` when unnamed); a group with neither assigned
  nor dismissed labels is the same as no group; a group the dataset holds but the record does not
  name must be empty (a write may remove it);
* labels are compared as a multiset (their order does not matter) of name (``"A > B"``; the list
  form is joined), ``sentiment`` and ``metadata`` (each when not null);
* entities: the assigned and the dismissed lists, each a multiset of name, ``formatted_value``
  and spans (``span`` is one span; each span's ``content_part``, ``message_index``,
  ``utf16_byte_start`` and ``utf16_byte_end``; fields the server derives are ignored);
  a list the record leaves out counts as empty;
* ``moon_forms``: equal as JSON values;
* predictions the dataset returns (``predicted``) are not annotations and are ignored.

Anything this cannot read with certainty (an unknown field in the record, a shape it does not
know, a comment the read did not return) counts as changed: a needless write costs one request,
a skipped one would lose the record's labels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_provider_cm.api.labels import label_name

#: Kinds a write carries.
KINDS = ("labelling", "entities", "moon_forms")
_LABEL_FIELDS = frozenset({"name", "sentiment", "metadata"})
_GROUP_FIELDS = frozenset({"group", "assigned", "dismissed"})
_ENTITY_FIELDS = frozenset({"name", "formatted_value", "span", "spans"})
_SPAN_FIELDS = ("content_part", "message_index", "utf16_byte_start", "utf16_byte_end")
_SPAN_FIELD_SET = frozenset(_SPAN_FIELDS)


class _Unreadable(Exception):
    """A value whose meaning is not certain: the comparison answers "changed"."""


def needs_write(wanted: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether writing ``wanted`` would change the comment's annotations.

    :param wanted: the write's body: some of ``labelling``, ``entities`` and ``moon_forms``.
    :param current: the comment as the dataset's annotation read returns it
        (``{"comment": ..., "labelling"?: ..., "entities"?: ..., "moon_forms"?: ...}``), or
        ``None`` if it is not known.
    :return: ``False`` only when every kind ``wanted`` carries already holds the same value.
    """
    if current is None or not set(wanted) <= set(KINDS):
        return True
    try:
        if "labelling" in wanted and _groups(wanted["labelling"], strict=True) != _groups(current.get("labelling")):
            return True
        if "entities" in wanted and _entities(wanted["entities"], strict=True) != _entities(current.get("entities")):
            return True
        if "moon_forms" in wanted and _json(wanted["moon_forms"]) != _json(current.get("moon_forms") or []):
            return True
    except _Unreadable:
        return True
    return False


def merged(annotations: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One write with the effect of several in order: each kind from the last that carries it."""
    out: dict[str, Any] = {}
    for body in annotations:
        out.update(body)
    return out


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _fields(value: Any, known: frozenset[str], strict: bool) -> dict[str, Any]:
    if not isinstance(value, dict) or (strict and not set(value) <= known):
        raise _Unreadable
    return value


def _groups(groups: Any, *, strict: bool = False) -> dict[str, tuple[list[str], list[str]]]:
    """Label groups by name -> (assigned, dismissed) as sorted label keys; empty groups left out."""
    if groups is None:
        return {}
    if not isinstance(groups, list):
        raise _Unreadable
    out: dict[str, tuple[list[str], list[str]]] = {}
    for group in groups:
        group = _fields(group, _GROUP_FIELDS, strict)
        name = group.get("group") or "default"
        if name in out:
            raise _Unreadable  # the same group twice: which one wins is not documented
        out[name] = (_labels(group.get("assigned"), strict), _labels(group.get("dismissed"), strict))
    return {name: lists for name, lists in out.items() if lists != ([], [])}


def _labels(labels: Any, strict: bool) -> list[str]:
    if labels is None:
        return []
    if not isinstance(labels, list):
        raise _Unreadable
    keys = []
    for label in labels:
        label = _fields(label, _LABEL_FIELDS, strict)
        if not isinstance(label.get("name"), (str, list)):
            raise _Unreadable
        key: dict[str, Any] = {"name": label_name(label["name"])}
        for optional in ("sentiment", "metadata"):
            if label.get(optional) is not None:
                key[optional] = label[optional]
        keys.append(_json(key))
    return sorted(keys)


def _entities(entities: Any, *, strict: bool = False) -> tuple[list[str], list[str]]:
    """(assigned, dismissed) as sorted entity keys; a list left out is empty."""
    if entities is None:
        return [], []
    entities = _fields(entities, frozenset({"assigned", "dismissed", "predicted"}), strict)
    return _entity_keys(entities.get("assigned"), strict), _entity_keys(entities.get("dismissed"), strict)


def _entity_keys(entities: Any, strict: bool) -> list[str]:
    if entities is None:
        return []
    if not isinstance(entities, list):
        raise _Unreadable
    keys = []
    for entity in entities:
        entity = _fields(entity, _ENTITY_FIELDS, strict)
        if strict and "span" in entity and "spans" in entity:
            raise _Unreadable
        spans = entity["spans"] if "spans" in entity else [entity["span"]] if "span" in entity else []
        if not isinstance(spans, list):
            raise _Unreadable
        key = {
            "name": entity.get("name"),
            "formatted_value": entity.get("formatted_value"),
            "spans": [_span(span, strict) for span in spans],
        }
        keys.append(_json(key))
    return sorted(keys)


def _span(span: Any, strict: bool) -> dict[str, Any]:
    span = _fields(span, _SPAN_FIELD_SET, strict)
    return {field: span[field] for field in _SPAN_FIELDS if field in span}
