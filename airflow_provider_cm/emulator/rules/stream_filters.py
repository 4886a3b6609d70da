"""A stream's ``comment_filter``: its schema (checked when the stream is written) and its matching.

``{"sources": [source ids], "timestamp": {"minimum", "maximum"}, "user_properties": {...},
"reviewed": "only_reviewed" | "only_unreviewed", "messages": {"from" | "to" | ...: {"one_of",
"not_one_of", "domain_one_of", "domain_not_one_of"}}}``, every part optional.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_cm.api.times import time_key
from airflow_provider_cm.emulator.routes.labellings import has_annotations
from airflow_provider_cm.emulator.rules.checks import array, obj, string, timestamp
from airflow_provider_cm.emulator.rules.user_properties import USER_PROPERTIES_FILTER, properties_match
from airflow_provider_cm.emulator.state.records import Comment, Dataset
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import parse_time

VALUES = array(string(min_len=1, max_len=65536), min_items=1, max_items=128)
PARTICIPANT = obj(
    {"one_of": VALUES, "not_one_of": VALUES, "domain_one_of": VALUES, "domain_not_one_of": VALUES}, closed=True
)
COMMENT_FILTER = obj(
    {
        "sources": array(string(min_len=1), min_items=1, max_items=128),
        "timestamp": obj({"minimum": timestamp(), "maximum": timestamp()}, closed=True),
        "user_properties": USER_PROPERTIES_FILTER,
        "reviewed": string(choices=("only_reviewed", "only_unreviewed")),
        "messages": obj({key: PARTICIPANT for key in ("from", "to", "cc", "bcc", "recipient")}, closed=True),
        "trigger_exceptions": obj({}),
        "annotations": obj({}),
    }
)


def _in_window(window: dict[str, Any], key: int) -> bool:
    if window.get("minimum") and key < time_key(parse_time(window["minimum"], "minimum")):
        return False
    return not (window.get("maximum") and key > time_key(parse_time(window["maximum"], "maximum")))


def _reviewed_matches(store: Store, dataset: Dataset, wanted: str | None, uid: str) -> bool:
    if wanted is None:
        return True
    return has_annotations(store, dataset, uid) == (wanted == "only_reviewed")


def _participant_matches(rule: dict[str, Any], addresses: list[str]) -> bool:
    domains = [a.rsplit("@", 1)[-1] for a in addresses]
    if "one_of" in rule and not set(addresses) & set(rule["one_of"]):
        return False
    if "not_one_of" in rule and set(addresses) & set(rule["not_one_of"]):
        return False
    if "domain_one_of" in rule and not set(domains) & set(rule["domain_one_of"]):
        return False
    return not ("domain_not_one_of" in rule and set(domains) & set(rule["domain_not_one_of"]))


def _addresses(comment: dict[str, Any], field: str) -> list[str]:
    out: list[str] = []
    for message in comment.get("messages") or []:
        value = message.get(field)
        out.extend([value] if isinstance(value, str) else value or [])
    return out


def _messages_match(rules: dict[str, Any], comment: dict[str, Any]) -> bool:
    for field, rule in rules.items():
        fields = ("to", "cc", "bcc") if field == "recipient" else (field,)
        if not _participant_matches(rule, [a for f in fields for a in _addresses(comment, f)]):
            return False
    return True


def matches(store: Store, dataset: Dataset, comment_filter: dict[str, Any], source_id: str, comment: Comment) -> bool:
    """Whether a stored comment passes a (checked) comment filter."""
    sources = comment_filter.get("sources")
    if sources and source_id not in sources:
        return False
    window = comment_filter.get("timestamp")
    if window and not _in_window(window, comment.timestamp_key):
        return False
    if not properties_match(comment_filter.get("user_properties") or {}, comment.fields.get("user_properties") or {}):
        return False
    if not _reviewed_matches(store, dataset, comment_filter.get("reviewed"), comment.uid):
        return False
    return _messages_match(comment_filter.get("messages") or {}, comment.fields)
