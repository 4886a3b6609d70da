"""Rows of the warehouse model from exported comments (``POST .../export``), typed and hashed.

:func:`comment_rows` turns one exported comment, ``{"comment", "annotations": {"labels":
{"assigned"}, "entities"?}, "predictions"?: {"labels", "entities"?}}``, into its rows of each data
table: times as aware UTC datetimes, probabilities and sentiments as floats, user properties typed
by their ``string:``/``number:`` prefix, JSON values as Python objects. Each row carries the load's
id, the time it was extracted and its hash; ``_cm_deleted_at`` is null (a row just read exists).

Predictions: by default the export's own (the latest model's, with a null ``model_version``, as
the API names none); a caller that read them from ``predict-comments`` on a pinned version passes
them with that version, and every predicted label row names it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec

from airflow_provider_cm.api.labels import LEVEL_SEPARATOR, label_name
from airflow_provider_cm.pipelines.warehouse.model import (
    COMMENT_ENTITIES,
    COMMENT_HASH,
    COMMENT_LABELS,
    COMMENT_USER_PROPERTIES,
    COMMENTS,
    DATA_TABLES,
    DELETED_AT,
    EXTRACTED_AT,
    LOAD_ID,
    ROW_HASH,
    TableSpec,
)
from airflow_provider_cm.pipelines.warehouse.row_hash import row_hash

_SENTIMENT = {"positive": 1.0, "negative": -1.0}
_PROPERTY_TYPES = ("string", "number")


class RowError(ValueError):
    """An exported comment that cannot become rows: names the comment's uid and the field."""


@dataclass(frozen=True)
class ExportedComment:
    """One exported comment before it becomes rows: its uid, its :func:`comment_hash`, what rows are built from.

    ``source`` is what the hash covers, as compact JSON: small to keep (pages read ahead wait on
    disk) and decoded only if the comment's rows are built.
    """

    uid: str
    comment_hash: str
    #: ``[comment, annotations, predictions, model_version]`` as :func:`comment_source` encodes them.
    source: bytes
    #: The predictions came from ``predict-comments`` on ``model_version`` (else from the export).
    pinned: bool

    def rows(self, *, load_id: str, extracted_at: datetime) -> CommentRows:
        """Its rows (see :func:`comment_rows`)."""
        comment, annotations, predictions, version = msgspec.json.decode(self.source)
        exported = {"comment": comment, "annotations": annotations}
        if not self.pinned:
            exported["predictions"] = predictions
        return comment_rows(
            exported,
            load_id=load_id,
            extracted_at=extracted_at,
            model_version=version,
            predictions=predictions if self.pinned else None,
            hashed=self.comment_hash,
        )


def _empty_tables() -> dict[str, list[dict[str, Any]]]:
    return {spec.name: [] for spec in DATA_TABLES}


class CommentRows:
    """The rows of some comments, by model table name (``comments``, ``comment_labels``, ...).

    Made from rows (``tables``), or from exported comments (``exported``, as :func:`page_rows`
    makes it), whose rows are built when :attr:`tables` is first read. A SQL load reads
    :attr:`comment_hashes` first and builds only the comments whose hash it has not stored
    (:meth:`without`): re-reading an unchanged comment costs its hash, not its rows.
    """

    def __init__(
        self,
        tables: dict[str, list[dict[str, Any]]] | None = None,
        *,
        exported: Sequence[ExportedComment] = (),
        load_id: str = "",
        extracted_at: datetime | None = None,
        model_version: int | None = None,
    ) -> None:
        self._tables = tables if tables is not None else (None if exported else _empty_tables())
        self.exported = list(exported)
        self.load_id = load_id
        self.extracted_at = extracted_at
        self.model_version = model_version

    @property
    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """The rows of each table (built from the exported comments on first use)."""
        if self._tables is None:
            self._tables = self._build(self.exported)
            self.exported = []  # built: what waits (and pickles) is the rows only
        return self._tables

    def _build(self, exported: Iterable[ExportedComment]) -> dict[str, list[dict[str, Any]]]:
        tables = _empty_tables()
        assert self.extracted_at is not None, "exported comments need the time they were extracted"
        for item in exported:
            for name, rows in item.rows(load_id=self.load_id, extracted_at=self.extracted_at).tables.items():
                tables[name].extend(rows)
        return tables

    def extend(self, other: CommentRows) -> None:
        """Add ``other``'s rows to these."""
        for name, rows in other.tables.items():
            self.tables.setdefault(name, []).extend(rows)

    @property
    def uids(self) -> list[str]:
        """The uids of the comments, in order."""
        if self._tables is None:
            return [item.uid for item in self.exported]
        return [row["uid"] for row in self._tables["comments"]]

    @property
    def comment_hashes(self) -> dict[str, str]:
        """Each comment's :func:`comment_hash` by uid (comments given as rows without one are left out)."""
        if self._tables is None:
            return {item.uid: item.comment_hash for item in self.exported}
        return {row["uid"]: row[COMMENT_HASH] for row in self._tables["comments"] if row.get(COMMENT_HASH)}

    def without(self, uids: Collection[str]) -> CommentRows:
        """The rows of the other comments: built only for them when not built yet."""
        if not uids:
            return self
        if self._tables is None:
            kept = [item for item in self.exported if item.uid not in uids]
            return CommentRows(
                self._build(kept),
                load_id=self.load_id,
                extracted_at=self.extracted_at,
                model_version=self.model_version,
            )
        return CommentRows(
            {name: [row for row in rows if row["uid"] not in uids] for name, rows in self.tables.items()}
        )


#: Bumped whenever the same exported comment would be built into other rows (a column added, a
#: value typed otherwise), so a load after an upgrade rebuilds every comment once.
ROWS_FORMAT = 1
_HASH_SALT = (
    f"rows-format {ROWS_FORMAT}; " + "; ".join(f"{spec.name}: {','.join(spec.column_names)}" for spec in DATA_TABLES)
).encode("utf-8")
#: Compact JSON with every object's keys sorted: the same value gives the same bytes on every run.
_ENCODE_SORTED = msgspec.json.Encoder(order="sorted").encode


def comment_source(
    exported: Mapping[str, Any], predictions: Mapping[str, Any] | None, model_version: int | None
) -> bytes:
    """What a comment's rows are built from, as compact JSON with sorted keys (the same bytes on every run).

    ``[comment, annotations, predictions, model_version]``: the export item's ``comment`` and
    ``annotations``, the predictions loaded (``predictions`` from ``predict-comments`` with
    ``model_version``, else the export's own with no version); nothing of the load (its id, the
    time it read the comment).
    """
    version = model_version if predictions is not None else None
    loaded = predictions if predictions is not None else exported.get("predictions")
    return _ENCODE_SORTED([exported.get("comment"), exported.get("annotations"), loaded, version])


def comment_hash(exported: Mapping[str, Any], predictions: Mapping[str, Any] | None, model_version: int | None) -> str:
    """The hex SHA-256 of the comment's :func:`comment_source` and of the rows' format.

    The format is :data:`ROWS_FORMAT` with the model's columns. Equal hashes mean equal rows, so a
    load skips building the rows of a comment whose hash is stored.
    """
    return _hash(comment_source(exported, predictions, model_version))


def _hash(source: bytes) -> str:
    return hashlib.sha256(_HASH_SALT + source).hexdigest()


def parse_time(value: Any, uid: str, what: str) -> datetime | None:
    """An API time (``2026-10-01T12:00:00.000000Z``) as an aware UTC datetime; ``None`` for none.

    :raises RowError: naming the uid and field if it is not an ISO-8601 time.
    """
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise RowError(f"comment {uid}: {what} must be an ISO-8601 string, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise RowError(f"comment {uid}: {what} is not an ISO-8601 time: {value!r}") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


#: Each data table's hashed columns, computed once (a row is hashed for every comment read).
_HASHED = {spec.name: spec.data_columns for spec in DATA_TABLES}


def _finish(spec: TableSpec, row: dict[str, Any], load_id: str, extracted_at: datetime) -> dict[str, Any]:
    row[ROW_HASH] = row_hash(row, _HASHED[spec.name])
    row[LOAD_ID] = load_id
    row[EXTRACTED_AT] = extracted_at
    row[DELETED_AT] = None
    return row


def _texts(messages: Sequence[Mapping[str, Any]], part: str) -> str | None:
    texts = [m[part]["text"] for m in messages if isinstance(m.get(part), Mapping) and m[part].get("text")]
    return "\n\n".join(texts) if texts else None


def _recipients(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    return [address for m in messages for kind in ("to", "cc", "bcc") for address in (m.get(kind) or [])]


def _label_row(uid: str, kind: str, label: Mapping[str, Any], model_version: int | None) -> dict[str, Any]:
    name = label_name(label.get("name"))
    if not name:
        raise RowError(f"comment {uid}: a {kind} label has no name")
    levels = name.split(LEVEL_SEPARATOR)
    sentiment = label.get("sentiment")
    if isinstance(sentiment, str):
        sentiment = _SENTIMENT.get(sentiment)
    probability = label.get("probability")
    return {
        "uid": uid,
        "kind": kind,
        "label": name,
        "depth": len(levels),
        "level_1": levels[0],
        "level_2": levels[1] if len(levels) > 1 else None,
        "level_3": levels[2] if len(levels) > 2 else None,
        "probability": None if probability is None else float(probability),
        "sentiment": None if sentiment is None else float(sentiment),
        "model_version": model_version if kind == "predicted" else None,
        "metadata": label.get("metadata"),
    }


def _entity_row(uid: str, kind: str, position: int, entity: Mapping[str, Any]) -> dict[str, Any]:
    spans = entity.get("spans")
    if spans is None and entity.get("span") is not None:
        spans = [entity["span"]]
    probability = entity.get("probability")
    return {
        "uid": uid,
        "kind": kind,
        "position": position,
        "name": label_name(entity.get("name") or entity.get("kind") or ""),
        "formatted_value": entity.get("formatted_value"),
        "probability": None if probability is None else float(probability),
        "spans": spans,
    }


def _property_row(uid: str, key: str, value: Any) -> dict[str, Any]:
    prefix, _, name = key.partition(":")
    if prefix not in _PROPERTY_TYPES or not name:
        raise RowError(f"comment {uid}: user property {key!r} has no 'string:' or 'number:' prefix")
    if prefix == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RowError(f"comment {uid}: user property {key!r} must be a number, got {value!r}")
        return {"uid": uid, "name": name, "type": "number", "string_value": None, "number_value": float(value)}
    return {"uid": uid, "name": name, "type": "string", "string_value": str(value), "number_value": None}


def _unique(rows: Iterable[dict[str, Any]], key: Sequence[str]) -> list[dict[str, Any]]:
    """Rows with a repeated key keep the first (the export never repeats a label; a merge must not see two)."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for row in rows:
        identity = tuple(row[k] for k in key)
        if identity not in seen:
            seen.add(identity)
            out.append(row)
    return out


def comment_rows(
    exported: Mapping[str, Any],
    *,
    load_id: str,
    extracted_at: datetime,
    model_version: int | None = None,
    predictions: Mapping[str, Any] | None = None,
    hashed: str | None = None,
) -> CommentRows:
    """One exported comment's rows of each data table.

    :param exported: the export's item ``{"comment", "annotations", "predictions"?}``.
    :param load_id: the load writing the rows.
    :param extracted_at: when the load read the comment (aware).
    :param model_version: the pinned version ``predictions`` came from; ``None`` with the export's own.
    :param predictions: ``{"labels": [...], "entities"?: [...]}`` from ``predict-comments`` (label
        names as lists or joined strings); ``None`` uses the export's ``predictions``.
    :param hashed: the comment's :func:`comment_hash`, if already computed.
    :raises RowError: if the comment has no uid or timestamp, a time is not ISO-8601, a label has
        no name, or a user property is not typed by its prefix.
    """
    comment = exported.get("comment") or {}
    uid = _uid(exported)
    timestamp = parse_time(comment.get("timestamp"), uid, "timestamp")
    if timestamp is None:
        raise RowError(f"comment {uid}: timestamp is missing")
    messages = comment.get("messages") or []
    senders = [m["from"] for m in messages if m.get("from")]
    version = model_version if predictions is not None else None
    rows = CommentRows()
    rows.tables["comments"].append(
        _finish(
            COMMENTS,
            {
                "uid": uid,
                "comment_id": comment.get("id") or uid.split(".", 1)[1],
                "source_id": uid.split(".", 1)[0],
                "thread_id": comment.get("thread_id"),
                "timestamp": timestamp,
                "created_at": parse_time(comment.get("created_at"), uid, "created_at"),
                "subject": _texts(messages, "subject"),
                "body": _texts(messages, "body"),
                "sender": senders[0] if senders else None,
                "recipients": _recipients(messages),
                "user_properties": comment.get("user_properties") or {},
                "has_annotations": bool(comment.get("has_annotations", False)),
                "model_version": version,
            },
            load_id,
            extracted_at,
        )
    )
    rows.tables["comments"][0][COMMENT_HASH] = hashed or comment_hash(exported, predictions, model_version)
    annotations = exported.get("annotations") or {}
    labels = annotations.get("labels") or {}
    predicted = predictions if predictions is not None else (exported.get("predictions") or {})
    label_rows = [
        _label_row(uid, kind, label, None) for kind in ("assigned", "dismissed") for label in labels.get(kind) or []
    ]
    label_rows += [_label_row(uid, "predicted", label, version) for label in predicted.get("labels") or []]
    rows.tables["comment_labels"] = [
        _finish(COMMENT_LABELS, row, load_id, extracted_at) for row in _unique(label_rows, COMMENT_LABELS.key)
    ]
    entities = annotations.get("entities") or {}
    entity_rows = [
        _entity_row(uid, kind, position, entity)
        for kind, items in (("assigned", entities.get("assigned")), ("predicted", predicted.get("entities")))
        for position, entity in enumerate(items or [])
    ]
    rows.tables["comment_entities"] = [_finish(COMMENT_ENTITIES, row, load_id, extracted_at) for row in entity_rows]
    rows.tables["comment_user_properties"] = [
        _finish(COMMENT_USER_PROPERTIES, _property_row(uid, key, value), load_id, extracted_at)
        for key, value in sorted((comment.get("user_properties") or {}).items())
    ]
    return rows


def _uid(exported: Mapping[str, Any]) -> str:
    comment = exported.get("comment") or {}
    uid = comment.get("uid")
    if not isinstance(uid, str) or "." not in uid:
        raise RowError(f"an exported comment has no uid of the form <source_id>.<comment_id>: {comment.get('id')!r}")
    return uid


def page_rows(
    page: Iterable[Mapping[str, Any]],
    *,
    load_id: str,
    extracted_at: datetime,
    model_version: int | None = None,
    predictions_by_uid: Mapping[str, Mapping[str, Any]] | None = None,
) -> CommentRows:
    """The rows of a page of exported comments (see :func:`comment_rows`), built when first read.

    Each comment's uid is checked and its :func:`comment_hash` computed now; its rows are built
    when :attr:`CommentRows.tables` is first read (or, for the comments a load has not stored,
    by :meth:`CommentRows.without`).

    :param predictions_by_uid: predictions from ``predict-comments`` by uid, with ``model_version``;
        ``None`` keeps the export's own. A comment missing from it gets no predicted labels.
    :raises RowError: if a comment has no uid of the form ``<source_id>.<comment_id>``.
    """
    exported = []
    for item in page:
        uid = _uid(item)
        predictions = None
        if predictions_by_uid is not None:
            predictions = predictions_by_uid.get(uid, {"labels": []})
        source = comment_source(item, predictions, model_version)
        exported.append(ExportedComment(uid, _hash(source), source, predictions is not None))
    return CommentRows(exported=exported, load_id=load_id, extracted_at=extracted_at, model_version=model_version)
