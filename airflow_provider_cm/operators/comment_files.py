"""Reading comment files for upload: JSONL in the ``re create comments`` format, or CSV with a column map.

Records are read one at a time (constant memory) and checked against the API's documented
constraints, so that a bad line is reported with its file, line and field before anything is sent.

JSONL, one object per line (blank lines are skipped)::

    {"comment": {"id": "1", "timestamp": "2026-10-01T00:00:00Z",
                 "messages": [{"body": {"text": "..."}}], "user_properties": {"string:Channel": "chat"}},
     "labelling": [{"group": "default", "assigned": [{"name": "Parent > Child", "sentiment": "positive"}]}],
     "entities": {"assigned": [...]}}

``labelling`` may also be the legacy single object ``{"assigned": [...], "dismissed": [...]}``,
which becomes the group ``default``. Label names given as lists of parts are joined with ``" > "``.

Documented normalisations: a timestamp without a zone is taken as UTC; a ``string:`` user
property whose value is empty or blank is dropped (as the official client does); a UTF-8 byte
order mark at the start of the file is ignored.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

from airflow_provider_cm.exceptions import CommunicationsMiningInputError

MAX_MESSAGES = 2048
MAX_TEXT = 65536
MAX_ADDRESS = 512
MAX_LABEL_PARTS = 64
MAX_LABEL_PART = 64
_MESSAGE_PARTS = ("subject", "body", "signature")
_TOP_LEVEL = frozenset({"comment", "labelling", "entities", "moon_forms"})
_SERVER_FIELDS = frozenset({"uid", "created_at", "has_annotations"})
_LABEL_KEYS = frozenset({"name", "sentiment", "metadata"})
_GROUP_KEYS = frozenset({"group", "assigned", "dismissed", "predicted"})
_LEGACY_GROUP_KEYS = frozenset({"assigned", "dismissed"})

#: Default CSV column map: comment field -> CSV column.
DEFAULT_CSV_COLUMNS: dict[str, Any] = {"id": "id", "timestamp": "timestamp", "text": "text"}
CSV_FIELDS = {"id", "timestamp", "text", "subject", "from", "to", "thread_id", "labels", "user_properties"}


class RecordError(ValueError):
    """One problem with one record: the field (a dotted path) and what is wrong."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(message)
        self.field = field_path
        self.message = message


@dataclass
class CommentRecord:
    """One validated record: the comment to ``sync`` and the annotations to write, if any.

    :param line: 1-based line where the record starts in the input file.
    :param comment: the comment object, normalised.
    :param labelling: label groups, or ``None`` if the record has none.
    :param entities: ``{"assigned": [...], "dismissed": [...]}``, or ``None``.
    :param moon_forms: field-extraction annotations, or ``None``.
    :param raw: the record as read, for the dead-letter file.
    """

    line: int
    comment: dict[str, Any]
    labelling: list[dict[str, Any]] | None = None
    entities: dict[str, Any] | None = None
    moon_forms: list[Any] | None = None
    raw: Any = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.comment["id"]

    @property
    def has_annotations(self) -> bool:
        """Whether the record carries anything to write to a dataset (the CLI's rule)."""
        if self.labelling and any("assigned" in g or "dismissed" in g for g in self.labelling):
            return True
        return bool(self.entities) or bool(self.moon_forms)


# -- validation -----------------------------------------------------------------------------------


def normalise_timestamp(value: Any, field_path: str) -> str:
    """Check an ISO-8601 time and return it as RFC 3339 UTC (``...Z``); no zone means UTC."""
    if not isinstance(value, str) or not value.strip():
        raise RecordError(field_path, "must be an ISO-8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise RecordError(field_path, f"{value!r} is not an ISO-8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    elif value.endswith("Z") and value[-2:-1].isdigit():
        return value  # already UTC in RFC 3339 form
    return parsed.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _check_text(container: Any, index: int, part: str) -> None:
    """Check ``comment.messages[index].<part>``: an object with a ``text`` string within the limit."""
    if not isinstance(container, dict):
        raise RecordError(f"comment.messages[{index}].{part}", "must be an object with a 'text' string")
    text = container.get("text")
    if not isinstance(text, str):
        raise RecordError(f"comment.messages[{index}].{part}.text", "must be a string")
    if len(text) > MAX_TEXT:
        raise RecordError(
            f"comment.messages[{index}].{part}.text",
            f"is {len(text)} characters long; the API takes at most {MAX_TEXT}",
        )


def _check_address(value: Any, field_path: str) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ADDRESS:
        raise RecordError(field_path, f"must be a string of 1 to {MAX_ADDRESS} characters")


def validate_comment(comment: Any) -> dict[str, Any]:
    """Check a comment object against the API's constraints and return it normalised.

    :raises RecordError: naming the first offending field.
    """
    if not isinstance(comment, dict):
        raise RecordError("comment", "must be an object")
    comment = dict(comment)
    if _SERVER_FIELDS.intersection(comment):
        for server_field in _SERVER_FIELDS:
            comment.pop(server_field, None)
    cid = comment.get("id")
    if cid is None:
        raise RecordError("comment.id", "is missing")
    if not isinstance(cid, str) or not cid.strip():
        raise RecordError("comment.id", "must be a non-empty string")
    if "timestamp" not in comment:
        raise RecordError("comment.timestamp", "is missing")
    comment["timestamp"] = normalise_timestamp(comment["timestamp"], "comment.timestamp")
    messages = comment.get("messages")
    if messages is None:
        raise RecordError("comment.messages", "is missing")
    if not isinstance(messages, list) or not messages:
        raise RecordError("comment.messages", "must be a non-empty list")
    if len(messages) > MAX_MESSAGES:
        raise RecordError("comment.messages", f"has {len(messages)} messages; the API takes at most {MAX_MESSAGES}")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RecordError(f"comment.messages[{index}]", "must be an object")
        _check_text(message.get("body"), index, "body")
        if len(message) == 1:
            continue  # the common case: a body and nothing else
        for part in ("subject", "signature"):
            if message.get(part) is not None:
                _check_text(message[part], index, part)
        if message.get("from") is not None:
            _check_address(message["from"], f"comment.messages[{index}].from")
        for recipients in ("to", "cc", "bcc"):
            values = message.get(recipients)
            if values is None:
                continue
            if not isinstance(values, list):
                raise RecordError(f"comment.messages[{index}].{recipients}", "must be a list of addresses")
            for r_index, value in enumerate(values):
                _check_address(value, f"comment.messages[{index}].{recipients}[{r_index}]")
        if message.get("sent_at") is not None:
            message = dict(message)
            message["sent_at"] = normalise_timestamp(message["sent_at"], f"comment.messages[{index}].sent_at")
            messages[index] = message
    properties = comment.get("user_properties")
    if properties is not None:
        comment["user_properties"] = validate_user_properties(properties)
    return comment


def validate_user_properties(properties: Any) -> dict[str, Any]:
    """Check ``string:``/``number:`` keyed properties; blank string values are dropped."""
    if not isinstance(properties, dict):
        raise RecordError("comment.user_properties", "must be an object")
    out: dict[str, Any] = {}
    for key, value in properties.items():
        if key.startswith("string:") and len(key) > len("string:"):
            if not isinstance(value, str):
                raise RecordError(f"comment.user_properties[{key!r}]", "must be a string (key starts with 'string:')")
            if value.strip():
                out[key] = value
        elif key.startswith("number:") and len(key) > len("number:"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise RecordError(f"comment.user_properties[{key!r}]", "must be a number (key starts with 'number:')")
            out[key] = value
        else:
            raise RecordError(
                f"comment.user_properties[{key!r}]", "key must start with 'string:' or 'number:' followed by a name"
            )
    return out


def _label(label: Any, group_path: str, kind: str, index: int) -> dict[str, Any]:
    """Check one label of ``<group_path>.<kind>[index]`` and return it with its name normalised."""
    if isinstance(label, str):
        label = {"name": label}
    field_path = f"{group_path}.{kind}[{index}]"
    if not isinstance(label, dict):
        raise RecordError(field_path, "must be a label object with a 'name'")
    if not _LABEL_KEYS.issuperset(label):
        unknown = ", ".join(sorted(set(label) - _LABEL_KEYS))
        raise RecordError(field_path, f"unknown label field(s): {unknown}")
    name = label.get("name")
    if isinstance(name, list):
        if not name or not all(isinstance(p, str) and p.strip() for p in name):
            raise RecordError(f"{field_path}.name", "must be a list of non-empty strings")
        name = " > ".join(name)
    if not isinstance(name, str) or not name.strip():
        raise RecordError(f"{field_path}.name", "must be a non-empty string such as 'Parent > Child'")
    parts = [p.strip() for p in name.split(">")] if ">" in name else [name.strip()]
    if not all(parts) or len(parts) > MAX_LABEL_PARTS or max(map(len, parts)) > MAX_LABEL_PART:
        raise RecordError(
            f"{field_path}.name",
            f"{name!r} is not a valid label name (at most {MAX_LABEL_PARTS} non-empty parts of "
            f"at most {MAX_LABEL_PART} characters)",
        )
    out: dict[str, Any] = {"name": " > ".join(parts) if len(parts) > 1 else parts[0]}
    sentiment = label.get("sentiment")
    if sentiment is not None:
        if sentiment != "positive" and sentiment != "negative":
            raise RecordError(f"{field_path}.sentiment", "must be 'positive' or 'negative'")
        out["sentiment"] = sentiment
    if label.get("metadata") is not None:
        out["metadata"] = label["metadata"]
    return out


def _group(group: Any, field_path: str, *, legacy: bool) -> dict[str, Any]:
    if not isinstance(group, dict):
        raise RecordError(field_path, "must be a label group object")
    allowed = _LEGACY_GROUP_KEYS if legacy else _GROUP_KEYS
    unknown = set(group) - allowed
    if unknown or (not (set(group) & {"assigned", "dismissed"}) and legacy):
        raise RecordError(
            field_path,
            "unknown labelling shape: expected a list of groups "
            "[{'group': 'default', 'assigned': [...], 'dismissed': [...]}] "
            "or the legacy object {'assigned': [...], 'dismissed': [...]}"
            + (f"; unknown key(s): {', '.join(sorted(unknown))}" if unknown else ""),
        )
    name = group.get("group", "default")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise RecordError(f"{field_path}.group", "must be a group name of 1 to 64 characters")
    out: dict[str, Any] = {"group": name}
    for kind in ("assigned", "dismissed"):
        if kind in group:
            labels = group[kind]
            if not isinstance(labels, list):
                raise RecordError(f"{field_path}.{kind}", "must be a list of labels")
            out[kind] = [_label(label, field_path, kind, i) for i, label in enumerate(labels)]
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


def record_from_object(obj: Any, line: int) -> CommentRecord:
    """Validate one JSONL object and build its :class:`CommentRecord`."""
    if not isinstance(obj, dict):
        raise RecordError("(record)", "must be a JSON object with a 'comment'")
    if "comment" not in obj:
        raise RecordError("comment", "is missing: each line must be {'comment': {...}, 'labelling'?: ...}")
    unknown = set(obj) - _TOP_LEVEL
    if unknown:
        raise RecordError(", ".join(sorted(unknown)), "unsupported field(s) in this record")
    moon_forms = obj.get("moon_forms")
    if moon_forms is not None and not isinstance(moon_forms, list):
        raise RecordError("moon_forms", "must be a list")
    return CommentRecord(
        line=line,
        comment=validate_comment(obj["comment"]),
        labelling=normalise_labelling(obj.get("labelling")),
        entities=normalise_entities(obj.get("entities")),
        moon_forms=moon_forms,
        raw=obj,
    )


# -- readers --------------------------------------------------------------------------------------

ReadResult = Iterator["CommentRecord | tuple[int, str, str]"]


def read_jsonl(handle: IO[bytes]) -> ReadResult:
    """Yield a :class:`CommentRecord` per line, or ``(line, field, message)`` for a bad line."""
    for line_number, raw_line in enumerate(handle, 1):
        if line_number == 1 and raw_line.startswith(codecs.BOM_UTF8):
            raw_line = raw_line[len(codecs.BOM_UTF8) :]
        try:
            text = raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield (
                line_number,
                "(line)",
                f"is not valid UTF-8 (byte 0x{raw_line[exc.start]:02x} at column {exc.start + 1})",
            )
            continue
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line_number, "(line)", f"is not valid JSON: {exc.msg} at column {exc.colno}"
            continue
        try:
            yield record_from_object(obj, line_number)
        except RecordError as exc:
            yield line_number, exc.field, exc.message


def _csv_column(columns: Mapping[str, Any], key: str) -> str | None:
    value = columns.get(key)
    return value if isinstance(value, str) and value else None


def read_csv(
    handle: IO[bytes],
    columns: Mapping[str, Any],
    *,
    label_separator: str = ";",
    delimiter: str = ",",
) -> ReadResult:
    """Yield a :class:`CommentRecord` per CSV row, or ``(line, field, message)`` for a bad row.

    :param columns: comment field -> CSV column: ``id``, ``timestamp``, ``text`` (required),
        ``subject``, ``from``, ``to`` (addresses separated by ``;``), ``thread_id``, ``labels``
        (label names separated by ``label_separator``) and ``user_properties`` (a map of property
        key such as ``"string:Channel"`` to CSV column; ``number:`` values are parsed as numbers).
    """
    unknown = set(columns) - CSV_FIELDS
    if unknown:
        raise ValueError(f"unknown csv_columns key(s): {', '.join(sorted(unknown))}; known: {sorted(CSV_FIELDS)}")
    for required in ("id", "timestamp", "text"):
        if not _csv_column(columns, required):
            raise ValueError(f"csv_columns must map '{required}' to a column")
    text_handle = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
    reader = csv.reader(text_handle, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except UnicodeDecodeError as exc:
        yield 1, "(header)", f"is not valid UTF-8: {exc.reason}"
        return
    except csv.Error as exc:
        yield 1, "(header)", f"is not valid CSV: {exc}"
        return
    index = {name.strip(): i for i, name in enumerate(header)}
    wanted: dict[str, str] = {k: v for k, v in columns.items() if isinstance(v, str)}
    properties: Mapping[str, str] = columns.get("user_properties") or {}
    if not isinstance(properties, Mapping):
        raise ValueError("csv_columns['user_properties'] must map property keys to column names")
    missing = [
        f"{column!r} (for {name})"
        for name, column in [*wanted.items(), *((f"user_properties[{k}]", v) for k, v in properties.items())]
        if column not in index
    ]
    if missing:
        yield 1, "(header)", f"missing mapped column(s) {', '.join(missing)}; the header has {', '.join(header)}"
        return
    line = 1
    while True:
        start = line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            yield start, "(line)", f"is not valid UTF-8: {exc.reason}"
            return
        except csv.Error as exc:
            yield start, "(line)", f"is not valid CSV: {exc}"
            return
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield start, "(row)", f"has {len(row)} cells; the header has {len(header)}"
            continue

        def cell(column: str, row: list[str] = row) -> str:
            return row[index[column]]

        message: dict[str, Any] = {"body": {"text": cell(wanted["text"])}}
        if "subject" in wanted and cell(wanted["subject"]):
            message["subject"] = {"text": cell(wanted["subject"])}
        if "from" in wanted and cell(wanted["from"]):
            message["from"] = cell(wanted["from"])
        if "to" in wanted and cell(wanted["to"]).strip():
            message["to"] = [a.strip() for a in cell(wanted["to"]).split(";") if a.strip()]
        comment: dict[str, Any] = {
            "id": cell(wanted["id"]),
            "timestamp": cell(wanted["timestamp"]),
            "messages": [message],
        }
        if "thread_id" in wanted and cell(wanted["thread_id"]):
            comment["thread_id"] = cell(wanted["thread_id"])
        obj: dict[str, Any] = {"comment": comment}
        try:
            if properties:
                values: dict[str, Any] = {}
                for key, column in properties.items():
                    value: Any = cell(column)
                    if key.startswith("number:") and value.strip():
                        try:
                            value = float(value) if any(c in value for c in ".eE") else int(value)
                        except ValueError:
                            raise RecordError(
                                f"{column} (user_properties[{key!r}])", f"{value!r} is not a number"
                            ) from None
                    elif key.startswith("number:"):
                        continue
                    values[key] = value
                comment["user_properties"] = values
            if "labels" in wanted:
                names = [n.strip() for n in cell(wanted["labels"]).split(label_separator) if n.strip()]
                if names:
                    obj["labelling"] = [{"group": "default", "assigned": [{"name": n} for n in names]}]
            yield record_from_object(obj, start)
        except RecordError as exc:
            yield start, _csv_field_name(exc.field, wanted), exc.message


def _csv_field_name(field_path: str, wanted: Mapping[str, str]) -> str:
    """Name the CSV column behind a comment field, e.g. ``comment.timestamp`` -> ``timestamp (column 'ts')``."""
    mapping = {
        "comment.id": "id",
        "comment.timestamp": "timestamp",
        "comment.messages[0].body.text": "text",
        "comment.messages[0].body": "text",
        "comment.messages[0].subject.text": "subject",
        "comment.messages[0].from": "from",
    }
    for prefix, key in mapping.items():
        if field_path.startswith(prefix) and key in wanted:
            return f"column {wanted[key]!r} ({field_path})"
    if field_path.startswith("labelling") and "labels" in wanted:
        return f"column {wanted['labels']!r} ({field_path})"
    return field_path


def detect_format(path: str, input_format: str) -> str:
    """``"jsonl"`` or ``"csv"`` from an explicit format or the file name.

    :raises ValueError: for an unknown format or a name that does not say.
    """
    if input_format in ("jsonl", "csv"):
        return input_format
    if input_format != "auto":
        raise ValueError(f"input_format must be 'auto', 'jsonl' or 'csv', got {input_format!r}")
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path!r} from its name; pass input_format='jsonl' or 'csv'")


def iter_records(
    handle: IO[bytes],
    fmt: str,
    *,
    csv_columns: Mapping[str, Any] | None = None,
    label_separator: str = ";",
    csv_delimiter: str = ",",
) -> ReadResult:
    """Records of a JSONL or CSV file, as :func:`read_jsonl` / :func:`read_csv` yield them."""
    if fmt == "csv":
        return read_csv(
            handle, csv_columns or DEFAULT_CSV_COLUMNS, label_separator=label_separator, delimiter=csv_delimiter
        )
    return read_jsonl(handle)


def raise_for_problems(path: str, problems: list[tuple[int, str, str]], total: int) -> None:
    """Raise :class:`CommunicationsMiningInputError` if any problem was found."""
    if total:
        raise CommunicationsMiningInputError(path, problems, total)
