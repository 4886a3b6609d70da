"""What the emulator stores: projects, sources with their comments, datasets with their annotations.

Rules follow ``communications-mining-api.md`` (the provider's API reference): comments are upserted
by id within a source, ``uid`` is ``<source_id>.<id>``, ``created_at`` is set on first insert,
billing counts created comments and updated comments whose text changed, annotations live per
dataset keyed by uid, and assigned entities are dropped when a comment's messages change.
"""

from __future__ import annotations

import base64
import bisect
import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_provider_cm.emulator.model import NaiveBayesModel


class ApiError(Exception):
    """An error the emulator answers with: HTTP status and the envelope's message."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def not_found() -> ApiError:
    return ApiError(404, "404 Not Found")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


MAX_SYNC_COMMENTS = 16384
MAX_EXPORT_LIMIT = 256
DEFAULT_EXPORT_LIMIT = 64
MAX_EXPORT_UIDS = 256
MAX_EXPORT_SOURCE_IDS = 1024
MAX_MESSAGES = 2048
MAX_TEXT = 65536
MAX_ADDRESS = 512


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def format_time(value: datetime) -> str:
    """The API's time form: UTC with microseconds, e.g. ``2018-09-17T09:54:56.332000Z``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any, what: str) -> datetime:
    """Parse an ISO-8601 time; a time without zone is taken as UTC."""
    if not isinstance(value, str):
        raise bad_request(f"{what} must be an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise bad_request(f"{what} is not a valid ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def time_key(value: datetime) -> int:
    """Microseconds since the epoch: an exact, sortable key."""
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def new_id() -> str:
    return secrets.token_hex(8)


def _message_texts(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple((m.get(part) or {}).get("text") for part in ("subject", "body", "signature")) for m in messages]


def validate_comment(index: int, comment: Any) -> None:
    """Apply the documented constraints on a comment sent to ``sync``."""
    where = f"comments[{index}]"
    if not isinstance(comment, dict):
        raise bad_request(f"{where} must be an object")
    cid = comment.get("id")
    if not isinstance(cid, str) or not cid:
        raise bad_request(f"{where}.id must be a non-empty string")
    where = f"{where} (id {cid!r})"
    if "timestamp" not in comment:
        raise bad_request(f"{where}: missing field 'timestamp'")
    parse_time(comment["timestamp"], f"{where}.timestamp")
    messages = comment.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request(f"{where}: 'messages' must be a non-empty list")
    if len(messages) > MAX_MESSAGES:
        raise bad_request(f"{where}: at most {MAX_MESSAGES} messages per comment")
    for m_index, message in enumerate(messages):
        m_where = f"{where}.messages[{m_index}]"
        if not isinstance(message, dict):
            raise bad_request(f"{m_where} must be an object")
        body = message.get("body")
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise bad_request(f"{m_where}.body.text must be a string")
        for part in ("subject", "body", "signature"):
            content = message.get(part)
            if content is None:
                continue
            if not isinstance(content, dict) or not isinstance(content.get("text"), str):
                raise bad_request(f"{m_where}.{part}.text must be a string")
            if len(content["text"]) > MAX_TEXT:
                raise bad_request(f"{m_where}.{part}.text is longer than {MAX_TEXT} characters")
        sender = message.get("from")
        if sender is not None and (not isinstance(sender, str) or not 1 <= len(sender) <= MAX_ADDRESS):
            raise bad_request(f"{m_where}.from must be a string of 1 to {MAX_ADDRESS} characters")
        for recipients in ("to", "cc", "bcc"):
            values = message.get(recipients)
            if values is None:
                continue
            if not isinstance(values, list) or not all(
                isinstance(v, str) and 1 <= len(v) <= MAX_ADDRESS for v in values
            ):
                raise bad_request(f"{m_where}.{recipients} must be a list of addresses")
    properties = comment.get("user_properties")
    if properties is not None:
        if not isinstance(properties, dict):
            raise bad_request(f"{where}.user_properties must be an object")
        for key, value in properties.items():
            if key.startswith("string:"):
                if not isinstance(value, str):
                    raise bad_request(f"{where}.user_properties[{key!r}] must be a string")
            elif key.startswith("number:"):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise bad_request(f"{where}.user_properties[{key!r}] must be a number")
            else:
                raise bad_request(f"{where}.user_properties key {key!r} must start with 'string:' or 'number:'")


def validate_label(label: Any, where: str) -> dict[str, Any]:
    if not isinstance(label, dict):
        raise bad_request(f"{where} must be an object")
    name = label.get("name")
    if isinstance(name, list) and name and all(isinstance(p, str) and p for p in name):
        name = " > ".join(name)
    if not isinstance(name, str) or not name.strip():
        raise bad_request(f"{where}.name must be a non-empty string")
    sentiment = label.get("sentiment")
    if sentiment is not None and sentiment not in ("positive", "negative"):
        raise bad_request(f"{where}.sentiment must be 'positive' or 'negative'")
    out: dict[str, Any] = {"name": name}
    if sentiment is not None:
        out["sentiment"] = sentiment
    if label.get("metadata") is not None:
        out["metadata"] = label["metadata"]
    return out


def with_parents(labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Expand ``"A > B"`` into ``"A"`` and ``"A > B"``, as the export lists parents with children."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for label in labels:
        parts = label["name"].split(" > ")
        for depth in range(1, len(parts) + 1):
            name = " > ".join(parts[:depth])
            if name in seen:
                continue
            seen.add(name)
            entry = {"name": name}
            if "sentiment" in label:
                entry["sentiment"] = label["sentiment"]
            out.append(entry)
    return out


def encode_continuation(key: int, uid: str) -> str:
    raw = json.dumps([key, uid], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continuation(token: Any) -> tuple[int, str]:
    if not isinstance(token, str) or not token:
        raise bad_request("continuation must be a non-empty string")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key, uid = json.loads(raw)
        return int(key), str(uid)
    except Exception:
        raise bad_request("continuation is not valid") from None


@dataclass
class Source:
    id: str
    project: str
    name: str
    fields: dict[str, Any]
    created_at: str
    updated_at: str
    comments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.project,
            "name": self.name,
            "title": self.fields.get("title", ""),
            "description": self.fields.get("description", ""),
            "language": self.fields.get("language", "en"),
            "should_translate": bool(self.fields.get("should_translate", False)),
            "sensitive_properties": self.fields.get("sensitive_properties", []),
            "bucket_id": self.fields.get("bucket_id"),
            "_kind": self.fields.get("_kind", "unknown"),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass
class Dataset:
    id: str
    project: str
    name: str
    fields: dict[str, Any]
    source_ids: list[str]
    created: str
    last_modified: str
    # uid -> {"labelling": [groups], "entities": {...}, "moon_forms": [...]}
    annotations: dict[str, dict[str, Any]] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)
    # version -> {"version", "trained_time", "trained_on", "model": NaiveBayesModel}
    models: dict[int, dict[str, Any]] = field(default_factory=dict)
    # tag ("live" / "staging") -> {"version", "updated_at"}
    model_tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    # name -> stream fields, with the private "_cursor" and "_exceptions"
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.project,
            "name": self.name,
            "title": self.fields.get("title", ""),
            "description": self.fields.get("description", ""),
            "created": self.created,
            "last_modified": self.last_modified,
            "model_family": self.fields.get("model_family", "english"),
            "source_ids": list(self.source_ids),
            "has_sentiment": bool(self.fields.get("has_sentiment", True)),
            "entity_defs": self.fields.get("entity_defs", []),
            "general_fields": self.fields.get("general_fields", []),
            "label_defs": [{"name": n, "title": n} for n in self.label_names],
            "label_groups": [{"name": "default", "label_defs": [{"name": n} for n in self.label_names]}],
            "_dataset_flags": self.fields.get("_dataset_flags", []),
            "_model_config": self.fields.get("_model_config", {"kind": "cm"}),
        }


class OAuthServer:
    """Client-credentials tokens the emulator issues: short-lived so that expiry happens in tests."""

    def __init__(self) -> None:
        self.clients: dict[str, str] = {}
        self.lifetime = 3600.0
        self.issued: dict[bytes, float] = {}  # b"Bearer <token>" -> monotonic expiry
        self.requests = 0

    def issue(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.requests += 1
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not client_id or self.clients.get(client_id) != secret:
            return 401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
        token = "cm-oauth-" + secrets.token_urlsafe(24)
        self.issued[f"Bearer {token}".encode()] = time.monotonic() + self.lifetime
        payload: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}
        if form.get("scope"):
            payload["scope"] = form["scope"]
        return 200, payload

    def accepts(self, authorization: bytes | None) -> bool:
        expiry = self.issued.get(authorization or b"")
        return expiry is not None and time.monotonic() < expiry


class EmulatorState:
    """All data of one emulated tenant, with optional persistence to a JSON file.

    Methods are called from the server's event loop one at a time; the lock guards against a
    test thread reading counters or saving while a request runs.
    """

    def __init__(self, state_path: str | None = None) -> None:
        self.state_path = state_path
        self.lock = threading.RLock()
        self.projects: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, Source] = {}
        self.datasets: dict[str, Dataset] = {}
        self.billed_comments = 0
        self.billed_predictions = 0
        self.billed_by_source: dict[str, int] = {}
        self.requests_by_route: dict[str, int] = {}
        self.dirty = False
        self._version = 0
        self._index_cache: dict[tuple[Any, ...], tuple[int, list[tuple[int, str, str, str]]]] = {}
        self.reject_comment_ids: dict[str, str] = {}
        self.fault_rules: list[Any] = []  # emulator.faults.FaultRule
        self.faults_injected: dict[str, int] = {}
        self.rate_limit: Any = None  # emulator.faults.TokenBucket
        self.latency = 0.0
        self.oauth = OAuthServer()
        if state_path and os.path.exists(state_path):
            self.load(state_path)

    # -- lookup -----------------------------------------------------------------------------------

    def _find_source(self, project: str, name: str) -> Source:
        for source in self.sources.values():
            if source.project == project and source.name == name:
                return source
        raise not_found()

    def source_by_ref(self, project_or_id: str, name: str | None = None) -> Source:
        if name is None:
            if project_or_id.startswith("id:") and project_or_id[3:] in self.sources:
                return self.sources[project_or_id[3:]]
            raise not_found()
        return self._find_source(project_or_id, name)

    def dataset_by_ref(self, project_or_id: str, name: str | None = None) -> Dataset:
        if name is None:
            if project_or_id.startswith("id:") and project_or_id[3:] in self.datasets:
                return self.datasets[project_or_id[3:]]
            raise not_found()
        for dataset in self.datasets.values():
            if dataset.project == project_or_id and dataset.name == name:
                return dataset
        raise not_found()

    def _require_project(self, project: str) -> None:
        if project not in self.projects:
            raise bad_request(f"project '{project}' does not exist")

    def _mutated(self) -> None:
        self.dirty = True
        self._version += 1

    # -- projects ---------------------------------------------------------------------------------

    def create_project(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if name in self.projects:
            raise ApiError(409, f"project '{name}' already exists")
        fields_ = body.get("project") or {}
        stamp = format_time(now_utc())
        self.projects[name] = {
            "id": new_id(),
            "name": name,
            "title": fields_.get("title", ""),
            "description": fields_.get("description", ""),
            "created_at": stamp,
            "updated_at": stamp,
        }
        self._mutated()
        return self.projects[name]

    # -- sources ----------------------------------------------------------------------------------

    def _new_resource_fields(self, kind: str, project: str, name: str, exists: bool, body: dict[str, Any]) -> dict:
        """Check a create request: the project exists, the name is free, the body is ``{kind: {...}}``."""
        self._require_project(project)
        if exists:
            raise ApiError(409, f"{kind} '{project}/{name}' already exists")
        fields_ = body.get(kind)
        if not isinstance(fields_, dict):
            raise bad_request(f"body must be {{'{kind}': {{...}}}}")
        return dict(fields_)

    def _exists(self, lookup: Any, *args: str) -> bool:
        try:
            lookup(*args)
        except ApiError:
            return False
        return True

    def create_source(self, project: str, name: str, body: dict[str, Any]) -> Source:
        exists = project in self.projects and self._exists(self._find_source, project, name)
        fields_ = self._new_resource_fields("source", project, name, exists, body)
        stamp = format_time(now_utc())
        source = Source(new_id(), project, name, fields_, stamp, stamp)
        self.sources[source.id] = source
        self._mutated()
        return source

    def update_source(self, source: Source, body: dict[str, Any]) -> Source:
        fields_ = body.get("source")
        if not isinstance(fields_, dict):
            raise bad_request("body must be {'source': {...}}")
        source.fields.update(fields_)
        source.updated_at = format_time(now_utc())
        self._mutated()
        return source

    def _comment_batch(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``comments`` of a sync or create-only request, each checked (400 for the first bad one)."""
        comments = body.get("comments")
        if not isinstance(comments, list):
            raise bad_request("body must be {'comments': [...]}")
        if len(comments) > MAX_SYNC_COMMENTS:
            raise bad_request(f"at most {MAX_SYNC_COMMENTS} comments per request, got {len(comments)}")
        for index, comment in enumerate(comments):
            validate_comment(index, comment)
            reason = self.reject_comment_ids.get(comment["id"])
            if reason:
                raise bad_request(f"comments[{index}] (id {comment['id']!r}): {reason}")
        return comments

    def sync(self, source: Source, body: dict[str, Any]) -> dict[str, int]:
        return self._upsert(source, self._comment_batch(body))

    def _upsert(self, source: Source, comments: list[dict[str, Any]]) -> dict[str, int]:
        counts = {"new": 0, "updated": 0, "unchanged": 0}
        created_at = format_time(now_utc())
        billed = 0
        for comment in comments:
            stored = _stored_form(comment)
            old = source.comments.get(comment["id"])
            if old is None:
                stored["uid"] = f"{source.id}.{comment['id']}"
                stored["created_at"] = created_at
                stored["_keys"] = _keys(stored)
                source.comments[comment["id"]] = stored
                counts["new"] += 1
                billed += 1
                continue
            if _comparable(old) == _comparable(stored):
                counts["unchanged"] += 1
                continue
            messages_changed = old.get("messages") != stored.get("messages")
            if _message_texts(old.get("messages", [])) != _message_texts(stored.get("messages", [])):
                billed += 1
            stored["uid"] = old["uid"]
            stored["created_at"] = old["created_at"]
            stored["_keys"] = _keys(stored)
            source.comments[comment["id"]] = stored
            counts["updated"] += 1
            if messages_changed:
                self._drop_assigned_entities(stored["uid"])
        self.billed_comments += billed
        self.billed_by_source[source.id] = self.billed_by_source.get(source.id, 0) + billed
        if counts["new"] or counts["updated"]:
            self._mutated()
        return counts

    def put_comments(self, source: Source, body: dict[str, Any]) -> None:
        """Create-only upload (private ``PUT .../comments``): 409 for an id holding different data."""
        comments = self._comment_batch(body)
        for index, comment in enumerate(comments):
            old = source.comments.get(comment["id"])
            if old is not None and _comparable(old) != _comparable(_stored_form(comment)):
                raise ApiError(409, f"comments[{index}] (id {comment['id']!r}) already exists with different data")
        new = [c for c in comments if c["id"] not in source.comments]
        if new:
            self._upsert(source, new)

    def _drop_assigned_entities(self, uid: str) -> None:
        for dataset in self.datasets.values():
            annotation = dataset.annotations.get(uid)
            if annotation and annotation.get("entities"):
                annotation["entities"]["assigned"] = []

    # -- datasets ---------------------------------------------------------------------------------

    def _check_source_ids(self, source_ids: Any) -> list[str]:
        if not isinstance(source_ids, list) or not all(isinstance(s, str) for s in source_ids):
            raise bad_request("source_ids must be a list of source ids")
        for source_id in source_ids:
            if source_id not in self.sources:
                raise bad_request(f"source id '{source_id}' does not exist")
        return list(dict.fromkeys(source_ids))

    def create_dataset(self, project: str, name: str, body: dict[str, Any]) -> Dataset:
        exists = project in self.projects and self._exists(self.dataset_by_ref, project, name)
        fields_ = self._new_resource_fields("dataset", project, name, exists, body)
        source_ids = self._check_source_ids(fields_.pop("source_ids", []))
        stamp = format_time(now_utc())
        dataset = Dataset(new_id(), project, name, fields_, source_ids, stamp, stamp)
        for label in fields_.get("label_defs") or []:
            if isinstance(label, dict) and isinstance(label.get("name"), str):
                dataset.label_names.append(label["name"])
        self.datasets[dataset.id] = dataset
        self._mutated()
        return dataset

    def update_dataset(self, dataset: Dataset, body: dict[str, Any]) -> Dataset:
        fields_ = body.get("dataset")
        if not isinstance(fields_, dict):
            raise bad_request("body must be {'dataset': {...}}")
        fields_ = dict(fields_)
        if "source_ids" in fields_:
            dataset.source_ids = self._check_source_ids(fields_.pop("source_ids"))
        dataset.fields.update(fields_)
        dataset.last_modified = format_time(now_utc())
        self._mutated()
        return dataset

    def delete_dataset(self, dataset: Dataset) -> None:
        del self.datasets[dataset.id]
        self._mutated()

    def _comment_by_uid(self, dataset: Dataset, uid: str) -> dict[str, Any]:
        source_id, _, comment_id = uid.partition(".")
        if source_id not in dataset.source_ids or source_id not in self.sources:
            raise not_found()
        comment = self.sources[source_id].comments.get(comment_id)
        if comment is None:
            raise not_found()
        return comment

    def update_annotations(self, dataset: Dataset, uid: str, body: dict[str, Any]) -> dict[str, Any]:
        comment = self._comment_by_uid(dataset, uid)
        annotation = dataset.annotations.setdefault(uid, {})
        if "labelling" in body:
            groups = body["labelling"]
            if not isinstance(groups, list):
                raise bad_request("labelling must be a list of label groups")
            clean_groups = []
            for g_index, group in enumerate(groups):
                if not isinstance(group, dict):
                    raise bad_request(f"labelling[{g_index}] must be an object")
                clean: dict[str, Any] = {"group": group.get("group") or "default"}
                for kind in ("assigned", "dismissed"):
                    if kind in group:
                        labels = group[kind]
                        if not isinstance(labels, list):
                            raise bad_request(f"labelling[{g_index}].{kind} must be a list")
                        clean[kind] = [
                            validate_label(label, f"labelling[{g_index}].{kind}[{i}]") for i, label in enumerate(labels)
                        ]
                clean_groups.append(clean)
            annotation["labelling"] = clean_groups
            for group in clean_groups:
                for label in group.get("assigned", []):
                    if label["name"] not in dataset.label_names:
                        dataset.label_names.append(label["name"])
        if "entities" in body:
            entities = body["entities"]
            if not isinstance(entities, dict):
                raise bad_request("entities must be an object with 'assigned' and/or 'dismissed'")
            for kind in ("assigned", "dismissed"):
                values = entities.get(kind, [])
                if not isinstance(values, list) or not all(
                    isinstance(e, dict) and isinstance(e.get("name"), str) for e in values
                ):
                    raise bad_request(f"entities.{kind} must be a list of entities with a 'name'")
            annotation["entities"] = {
                "assigned": list(entities.get("assigned", [])),
                "dismissed": list(entities.get("dismissed", [])),
            }
        if "moon_forms" in body:
            if not isinstance(body["moon_forms"], list):
                raise bad_request("moon_forms must be a list")
            annotation["moon_forms"] = body["moon_forms"]
        self._mutated()
        return self.annotated_comment(dataset, comment)

    def has_annotations(self, dataset: Dataset | None, uid: str) -> bool:
        datasets = [dataset] if dataset else list(self.datasets.values())
        for ds in datasets:
            annotation = ds.annotations.get(uid)
            if not annotation:
                continue
            if any(g.get("assigned") or g.get("dismissed") for g in annotation.get("labelling", [])):
                return True
            if annotation.get("entities", {}).get("assigned") or annotation.get("moon_forms"):
                return True
        return False

    def public_comment(self, comment: dict[str, Any], dataset: Dataset | None = None) -> dict[str, Any]:
        out = _without_keys(comment)
        out["has_annotations"] = self.has_annotations(dataset, comment["uid"])
        return out

    def annotated_comment(self, dataset: Dataset, comment: dict[str, Any]) -> dict[str, Any]:
        annotation = dataset.annotations.get(comment["uid"], {})
        out: dict[str, Any] = {"comment": self.public_comment(comment, dataset)}
        if "labelling" in annotation:
            out["labelling"] = annotation["labelling"]
        if "entities" in annotation:
            out["entities"] = annotation["entities"]
        if "moon_forms" in annotation:
            out["moon_forms"] = annotation["moon_forms"]
        return out

    def get_annotations(self, dataset: Dataset, uids: list[str]) -> list[dict[str, Any]]:
        return [self.annotated_comment(dataset, self._comment_by_uid(dataset, uid)) for uid in uids]

    # -- export -----------------------------------------------------------------------------------

    def _sorted_index(self, dataset: Dataset, order_by: str, source_ids: tuple[str, ...]):
        cache_key = (dataset.id, order_by, source_ids, tuple(dataset.source_ids))
        cached = self._index_cache.get(cache_key)
        if cached and cached[0] == self._version:
            return cached[1]
        rows: list[tuple[int, str, str, str]] = []
        for source_id in source_ids:
            source = self.sources.get(source_id)
            if source is None:
                continue
            for comment_id, comment in source.comments.items():
                rows.append((comment["_keys"][order_by], comment["uid"], source_id, comment_id))
        rows.sort()
        self._index_cache = {k: v for k, v in self._index_cache.items() if v[0] == self._version}
        self._index_cache[cache_key] = (self._version, rows)
        return rows

    def export(self, dataset: Dataset, body: dict[str, Any]) -> dict[str, Any]:
        limit = body.get("limit", DEFAULT_EXPORT_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EXPORT_LIMIT:
            raise bad_request(f"limit must be an integer from 1 to {MAX_EXPORT_LIMIT}")
        uids = body.get("comment_uids")
        if uids is not None:
            others = [k for k in ("source_ids", "order_by", "from", "to", "continuation") if k in body]
            if others:
                raise bad_request(f"comment_uids cannot be combined with {', '.join(others)}")
            if not isinstance(uids, list) or len(uids) > MAX_EXPORT_UIDS:
                raise bad_request(f"comment_uids must be a list of at most {MAX_EXPORT_UIDS} uids")
            found = []
            for uid in uids:
                try:
                    found.append(self._comment_by_uid(dataset, uid))
                except ApiError:
                    continue
            return {"comments": [self.exported_comment(dataset, c) for c in found]}
        order_by = body.get("order_by", "timestamp")
        if order_by not in ("timestamp", "created_at"):
            raise bad_request("order_by must be 'timestamp' or 'created_at'")
        source_ids = body.get("source_ids")
        if source_ids is None:
            selected = tuple(dataset.source_ids)
        else:
            if not isinstance(source_ids, list) or len(source_ids) > MAX_EXPORT_SOURCE_IDS:
                raise bad_request(f"source_ids must be a list of at most {MAX_EXPORT_SOURCE_IDS} ids")
            unknown = [s for s in source_ids if s not in dataset.source_ids]
            if unknown:
                raise bad_request(f"source ids not in this dataset: {', '.join(map(str, unknown))}")
            selected = tuple(s for s in dataset.source_ids if s in source_ids)
        low = time_key(parse_time(body["from"], "from")) if body.get("from") is not None else None
        high = time_key(parse_time(body["to"], "to")) if body.get("to") is not None else None
        rows = self._sorted_index(dataset, order_by, selected)
        if body.get("continuation") is not None:
            key, uid = decode_continuation(body["continuation"])
            position = bisect.bisect_right(rows, (key, uid, "\uffff", "\uffff"))
        elif low is not None:
            position = bisect.bisect_left(rows, (low,))
        else:
            position = 0
        page: list[dict[str, Any]] = []
        while position < len(rows) and len(page) < limit:
            key, uid, source_id, comment_id = rows[position]
            if high is not None and key > high:
                break
            if low is None or key >= low:
                page.append(self.exported_comment(dataset, self.sources[source_id].comments[comment_id]))
            position += 1
        result: dict[str, Any] = {"comments": page}
        more = position < len(rows) and (high is None or rows[position][0] <= high)
        if more and page:
            last = rows[position - 1]
            result["continuation"] = encode_continuation(last[0], last[1])
        return result

    def exported_comment(self, dataset: Dataset, comment: dict[str, Any]) -> dict[str, Any]:
        annotation = dataset.annotations.get(comment["uid"], {})
        assigned: list[dict[str, Any]] = []
        for group in annotation.get("labelling", []):
            assigned.extend(group.get("assigned", []))
        annotations: dict[str, Any] = {"labels": {"assigned": with_parents(assigned)}}
        entities = annotation.get("entities", {}).get("assigned")
        if entities:
            annotations["entities"] = {"assigned": entities}
        return {"comment": self.public_comment(comment, dataset), "annotations": annotations}

    # -- persistence and inspection ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "billed_comments": self.billed_comments,
            "billed_predictions": self.billed_predictions,
            "billed_by_source": dict(self.billed_by_source),
            "comments": sum(len(s.comments) for s in self.sources.values()),
            "requests_by_route": dict(self.requests_by_route),
            "token_requests": self.oauth.requests,
            "faults_injected": dict(self.faults_injected),
            "throttled": self.rate_limit.throttled if self.rate_limit else 0,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "projects": self.projects,
            "sources": [
                {
                    "id": s.id,
                    "project": s.project,
                    "name": s.name,
                    "fields": s.fields,
                    "created_at": s.created_at,
                    "updated_at": s.updated_at,
                    "comments": [_without_keys(c) for c in s.comments.values()],
                }
                for s in self.sources.values()
            ],
            "datasets": [
                {
                    "id": d.id,
                    "project": d.project,
                    "name": d.name,
                    "fields": d.fields,
                    "source_ids": d.source_ids,
                    "created": d.created,
                    "last_modified": d.last_modified,
                    "annotations": d.annotations,
                    "label_names": d.label_names,
                    "models": [
                        {**{k: v for k, v in m.items() if k != "model"}, "model": m["model"].to_json()}
                        for m in d.models.values()
                    ],
                    "model_tags": d.model_tags,
                    "streams": d.streams,
                }
                for d in self.datasets.values()
            ],
            "billed_comments": self.billed_comments,
            "billed_predictions": self.billed_predictions,
            "billed_by_source": self.billed_by_source,
        }

    def save(self, path: str | None = None) -> None:
        """Write the state atomically (temporary file, then rename)."""
        path = path or self.state_path
        if not path:
            return
        with self.lock:
            data = json.dumps(self.snapshot(), separators=(",", ":"))
            self.dirty = False
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".emulator-state-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def load(self, path: str) -> None:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        self.projects = data.get("projects", {})
        for s in data.get("sources", []):
            source = Source(s["id"], s["project"], s["name"], s["fields"], s["created_at"], s["updated_at"])
            for comment in s["comments"]:
                comment["_keys"] = _keys(comment)
                source.comments[comment["id"]] = comment
            self.sources[source.id] = source
        for d in data.get("datasets", []):
            dataset = Dataset(
                d["id"],
                d["project"],
                d["name"],
                d["fields"],
                d["source_ids"],
                d["created"],
                d["last_modified"],
                d.get("annotations", {}),
                d.get("label_names", []),
            )
            for m in d.get("models", []):
                dataset.models[int(m["version"])] = {**m, "model": NaiveBayesModel.from_json(m["model"])}
            dataset.model_tags = d.get("model_tags", {})
            dataset.streams = d.get("streams", {})
            self.datasets[dataset.id] = dataset
        self.billed_comments = data.get("billed_comments", 0)
        self.billed_predictions = data.get("billed_predictions", 0)
        self.billed_by_source = data.get("billed_by_source", {})
        self._version += 1


def _stored_form(comment: dict[str, Any]) -> dict[str, Any]:
    stored = {k: v for k, v in comment.items() if k not in ("uid", "created_at", "has_annotations")}
    stored["timestamp"] = format_time(parse_time(comment["timestamp"], "timestamp"))
    properties = stored.get("user_properties")
    if properties:
        stored["user_properties"] = {k: v for k, v in properties.items() if not (isinstance(v, str) and not v.strip())}
    return stored


def _keys(comment: dict[str, Any]) -> dict[str, int]:
    return {
        "timestamp": time_key(parse_time(comment["timestamp"], "timestamp")),
        "created_at": time_key(parse_time(comment["created_at"], "created_at")),
    }


def _comparable(comment: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in comment.items() if k not in ("uid", "created_at", "_keys")}


def _without_keys(comment: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in comment.items() if k != "_keys"}
