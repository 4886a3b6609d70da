"""Reading comment files for upload: JSONL in the ``re create comments`` format, or CSV with a column map.

Records are read one at a time (constant memory) and checked against the API's rules
(:mod:`~airflow_provider_cm.pipelines.comments.comment_validation`), so that a bad line is reported with
its file, line and field before anything is sent. Nothing in a file makes the readers raise: a
line they cannot read (bad UTF-8, bad JSON, nesting too deep to parse, a number too large to
carry, a lone surrogate, a NUL byte, a byte order mark in the middle of the file, a last line cut
short) is reported like any other problem. The fast path (msgspec decoding straight into the
schema) only ever decides that a line is good: whatever it raises, the line is read again with
the standard library, which says exactly why; and should a line still fail in a way no rule
names, it is reported as that line's problem (``could not be read (<error>)``), never raised.

JSONL, one object per line (blank lines are skipped)::

    {"comment": {"id": "1", "timestamp": "2026-10-01T00:00:00Z",
                 "messages": [{"body": {"text": "..."}}], "user_properties": {"string:Channel": "chat"}},
     "labelling": [{"group": "default", "assigned": [{"name": "Parent > Child", "sentiment": "positive"}]}],
     "entities": {"assigned": [...]}}

``labelling`` may also be the legacy single object ``{"assigned": [...], "dismissed": [...]}``,
which becomes the group ``default``. A UTF-8 byte order mark at the start of a file is ignored.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import msgspec

from airflow_provider_cm.api.comment_schema import (
    RECORD_DECODER,
    UNSET,
    NewAnnotatedComment,
    NewComment,
    check_comment_rules,
    convert,
)
from airflow_provider_cm.exceptions import CommunicationsMiningInputError
from airflow_provider_cm.pipelines.comments.comment_validation import (
    RecordError,
    TimestampRule,
    check_sendable,
    normalise_entities,
    normalise_labelling,
    property_kind,
)

__all__ = [
    "CSV_FIELDS",
    "DEFAULT_CSV_COLUMNS",
    "CommentRecord",
    "CsvColumns",
    "CsvColumnsError",
    "detect_format",
    "iter_records",
    "raise_for_problems",
    "read_csv",
    "read_jsonl",
    "record_from_object",
]

_TOP_LEVEL = frozenset(NewAnnotatedComment.__struct_fields__)
#: A ``\\uD800``-``\\uDFFF`` escape in JSON text: the only way a lone surrogate gets in.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
#: A number in a CSV cell (ASCII digits only: ``int()`` would also take ``"1_000"`` and ``"٣"``).
_CSV_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)

#: Default CSV column map: comment field -> CSV column.
DEFAULT_CSV_COLUMNS: dict[str, Any] = {"id": "id", "timestamp": "timestamp", "text": "text"}
CSV_FIELDS = ("id", "timestamp", "text", "subject", "from", "to", "thread_id", "labels", "user_properties")
_REQUIRED_CSV_FIELDS = ("id", "timestamp", "text")
#: Comment field path -> the ``csv_columns`` key whose column it comes from.
_CSV_SOURCES = {
    "comment.id": "id",
    "comment.timestamp": "timestamp",
    "comment.messages[0].body": "text",
    "comment.messages[0].subject": "subject",
    "comment.messages[0].from": "from",
    "comment.messages[0].to": "to",
    "comment.thread_id": "thread_id",
    "labelling": "labels",
}


@dataclass
class CommentRecord:
    """One validated record: the comment to ``sync`` and the annotations to write, if any.

    :param line: 1-based line where the record starts in the input file.
    :param comment: the comment, normalised: the schema's struct (a plain dict in tests).
    :param labelling: label groups, or ``None`` if the record has none.
    :param entities: ``{"assigned": [...], "dismissed": [...]}``, or ``None``.
    :param moon_forms: field-extraction annotations, or ``None``.
    :param audio_path: the CLI's path of an audio recording of the comment, or ``None``; read
        and checked, not uploaded (the upload sends comments and annotations only).
    """

    line: int
    comment: NewComment | dict[str, Any]
    labelling: list[dict[str, Any]] | None = None
    entities: dict[str, Any] | None = None
    moon_forms: list[Any] | None = None
    audio_path: str | None = None

    @property
    def id(self) -> str:
        try:
            return self.comment.id  # type: ignore[union-attr]
        except AttributeError:  # a plain dict
            return self.comment["id"]  # type: ignore[index]

    def comment_dict(self) -> dict[str, Any]:
        """The comment as plain JSON data (``{"id", "timestamp", "messages", ...}``), as it is sent."""
        if isinstance(self.comment, dict):
            return self.comment
        return msgspec.to_builtins(self.comment)  # type: ignore[no-any-return]

    @property
    def has_annotations(self) -> bool:
        """Whether the record carries anything to write to a dataset (the CLI's rule)."""
        if self.labelling and any("assigned" in g or "dismissed" in g for g in self.labelling):
            return True
        return bool(self.entities) or bool(self.moon_forms)


ReadResult = Iterator["CommentRecord | tuple[int, str, str]"]


def record_from_object(obj: Any, line: int, timestamps: TimestampRule | None = None) -> CommentRecord:
    """Validate one JSONL object (as JSON decodes it) and build its :class:`CommentRecord`.

    :raises RecordError: naming the first offending field.
    """
    if not isinstance(obj, dict):
        raise RecordError("(record)", "must be a JSON object with a 'comment'")
    if "comment" not in obj:
        raise RecordError("comment", "is missing: each line must be {'comment': {...}, 'labelling'?: ...}")
    if not _TOP_LEVEL.issuperset(obj):
        raise RecordError(", ".join(sorted(set(obj) - _TOP_LEVEL)), "unsupported field(s) in this record")
    return _checked_record(convert(obj, NewAnnotatedComment, ""), line, timestamps)


def _checked_record(record: NewAnnotatedComment, line: int, timestamps: TimestampRule | None) -> CommentRecord:
    """A record whose types the schema checked, with the rules no type can say applied."""
    moon_forms = record.moon_forms
    return CommentRecord(
        line=line,
        comment=check_comment_rules(record.comment, timestamps or TimestampRule()),
        labelling=None if record.labelling is UNSET else normalise_labelling(record.labelling),
        entities=None if record.entities is UNSET else normalise_entities(record.entities),
        moon_forms=None if moon_forms is UNSET else moon_forms,
        audio_path=None if record.audio_path is UNSET else record.audio_path,
    )


# -- JSONL ----------------------------------------------------------------------------------------


class _NonFiniteNumber(Exception):
    """A JSON number too large for a float (found again, with its field, by a second parse)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteNumber
    return value


#: Depth from which a value is named as "nested too deeply" (no comment is near it; both JSON
#: readers give up at Python's recursion limit, about 1,000).
_NAMED_DEPTH = 200
#: A JSON string token, and an integer longer than Python reads (``sys.get_int_max_str_digits``).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_JSON_NUMBER = re.compile(r"-?(\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?", re.ASCII)
_KEY = object()


def _max_digits() -> int:
    """The most digits of an integer Python reads from text (0, no limit, where it has none)."""
    return getattr(sys, "get_int_max_str_digits", lambda: 0)() or sys.maxsize


def _field_of_failure(text: str) -> str:
    """The field of what a JSON reader could not read: the first value nested :data:`_NAMED_DEPTH`
    levels deep, or the first integer too long to read.

    Scans the text without recursion (the JSON readers gave up) and names the innermost object
    member around that value as a path (``comment.user_properties['string:X']``); ``(line)`` if
    there is none or the text cannot be followed.
    """
    too_long = _max_digits()
    kinds: list[str] = []
    path: list[Any] = []  # per open container: its current index, or member name (_KEY before the name)
    position, end = 0, len(text)
    while len(kinds) < _NAMED_DEPTH:
        if position >= end:
            return "(line)"
        char = text[position]
        token = _JSON_STRING.match(text, position) if char == '"' else _JSON_NUMBER.match(text, position)
        if token is not None:
            if char == '"' and kinds and kinds[-1] == "{" and path[-1] is _KEY:
                path[-1] = _member_name(token.group())
            elif char != '"' and len(token.group(1)) > too_long and not any(c in token.group() for c in ".eE"):
                break
            position = token.end()
            continue
        if char in "[{":
            kinds.append(char)
            path.append(0 if char == "[" else _KEY)
        elif char in "]}" and kinds:
            kinds.pop()
            path.pop()
        elif char == "," and kinds:
            path[-1] = path[-1] + 1 if kinds[-1] == "[" else _KEY
        position += 1
    return _path_name(path)


def _member_name(token: str) -> str:
    try:
        name = json.loads(token)
    except ValueError:  # an escape JSON does not have
        return token[1:-1]
    return name if isinstance(name, str) else token


def _path_name(path: list[Any]) -> str:
    """``comment.user_properties['string:X']`` for the parts up to the last member name; ``(line)`` if none."""
    named = [i for i, part in enumerate(path) if isinstance(part, str)]
    name = ""
    for part in path[: named[-1] + 1] if named else []:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part.isidentifier() and part.isascii():
            name = f"{name}.{part}" if name else part
        else:
            name += f"[{part!r}]"
    return name or "(line)"


def _not_a_number(word: str) -> Any:
    raise RecordError("(line)", f"is not valid JSON: {word} is not a JSON number")


#: Built once: ``json.loads`` with these hooks would build a decoder for every line.
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_not_a_number)
_LENIENT_DECODER = json.JSONDecoder(parse_constant=_not_a_number)


def parse_json_line(raw_line: bytes) -> Any:
    """The JSON value of one line, or ``None`` for a blank line.

    :raises RecordError: for a line that is not UTF-8, not JSON, nested too deeply to read, or
        holds a value JSON cannot carry (named by its field).
    """
    try:
        text = raw_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = raw_line[exc.start]
        raise RecordError("(line)", f"is not valid UTF-8 (byte 0x{byte:02x} at column {exc.start + 1})") from None
    if not text or text.isspace():
        return None
    if text.startswith("\ufeff"):
        raise RecordError(
            "(line)",
            "starts with a byte order mark (U+FEFF) in the middle of the file (files joined together?): "
            "only the file's first line may have one",
        )
    try:
        obj = _DECODER.decode(text)
    except _NonFiniteNumber:
        obj = _LENIENT_DECODER.decode(text)
        check_sendable(obj)
    except json.JSONDecodeError as exc:
        raise RecordError("(line)", f"is not valid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise RecordError(
            _field_of_failure(text),
            "is nested too deeply to read (arrays or objects within each other beyond the JSON reader's limit)",
        ) from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        if "integer string conversion" in str(exc):
            message = f"is an integer of more than {_max_digits():,} digits, too long to read"
        else:
            message = f"is not valid JSON: {exc}"
        raise RecordError(_field_of_failure(text), message) from None
    if _SURROGATE_ESCAPE.search(raw_line):
        check_sendable(obj)
    return obj


def read_jsonl(handle: IO[bytes], *, timestamps: TimestampRule | None = None) -> ReadResult:
    """Yield a :class:`CommentRecord` per line, or ``(line, field, message)`` for a bad line.

    :param handle: the file, opened in binary mode.
    :param timestamps: how timestamps are read (default: RFC 3339, no offset meaning UTC).
    """
    timestamps = timestamps or TimestampRule()
    for line_number, raw_line in enumerate(handle, 1):
        if line_number == 1 and raw_line.startswith(codecs.BOM_UTF8):
            raw_line = raw_line[len(codecs.BOM_UTF8) :]
        try:
            record = _read_line(raw_line, line_number, timestamps)
        except RecordError as exc:
            yield line_number, exc.field, exc.message
        except Exception as exc:  # no rule names it: still this line's problem, never a traceback
            yield line_number, "(line)", unreadable(exc)
        else:
            if record is not None:
                yield record


def unreadable(exc: BaseException) -> str:
    """The problem said for a line or row that failed in a way no rule names (a reader's own gap).

    The words are fixed (``could not be read (<error>)``) so tests can tell such a gap from a
    problem a rule names.
    """
    return f"could not be read ({type(exc).__name__}: {exc})"


def _read_line(raw_line: bytes, line: int, timestamps: TimestampRule) -> CommentRecord | None:
    """The record of one JSONL line, ``None`` for a blank line.

    :raises RecordError: naming the field.
    """
    try:
        # Decoded and checked against the schema's types in one pass (the common case).
        record = RECORD_DECODER.decode(raw_line)
    except Exception:  # msgspec's DecodeError, and RecursionError, MemoryError...
        # A blank line, or one the fast path refuses for any reason: read again with the standard
        # library to say exactly why (the JSON reader's words, the field of a value JSON cannot
        # carry, of a value nested too deeply, every unsupported field), through the same schema.
        obj = parse_json_line(raw_line)
        return None if obj is None else record_from_object(obj, line, timestamps)
    return _checked_record(record, line, timestamps)


# -- CSV ------------------------------------------------------------------------------------------


class CsvColumnsError(ValueError):
    """A ``csv_columns`` map that cannot work; ``problems`` lists every mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("csv_columns: " + "; ".join(problems))


@dataclass(frozen=True)
class CsvColumns:
    """A checked ``csv_columns`` map.

    :param fields: comment field (``id``, ``timestamp``, ``text``, ``subject``, ``from``, ``to``,
        ``thread_id``, ``labels``) -> CSV column.
    :param properties: user-property key (``"string:Channel"``, ``"number:Score"``) -> CSV column.
    """

    fields: dict[str, str]
    properties: dict[str, str]

    @classmethod
    def from_mapping(cls, columns: Any) -> CsvColumns:
        """Check a ``csv_columns`` map once, before any row is read.

        :raises CsvColumnsError: listing every mistake: an unknown key, a required field left
            unmapped, a column that is not a name, a user property without its ``string:`` /
            ``number:`` prefix.
        """
        if not isinstance(columns, Mapping):
            raise CsvColumnsError([f"must be a map of comment field to column name, got {type(columns).__name__}"])
        problems = [f"unknown key {key!r} (known: {', '.join(CSV_FIELDS)})" for key in columns if key not in CSV_FIELDS]
        problems += [f"{key!r} must be mapped to a column" for key in _REQUIRED_CSV_FIELDS if key not in columns]
        fields = {k: v for k, v in columns.items() if k in CSV_FIELDS and k != "user_properties"}
        problems += [f"{k!r} must name a column, got {v!r}" for k, v in fields.items() if not _is_name(v)]
        properties = columns.get("user_properties") or {}
        if not isinstance(properties, Mapping):
            problems.append("'user_properties' must map property keys such as 'string:Channel' to column names")
            properties = {}
        for key, column in properties.items():
            if property_kind(key) is None:
                problems.append(f"user property {key!r} must start with 'string:' or 'number:' followed by a name")
            if not _is_name(column):
                problems.append(f"user property {key!r} must name a column, got {column!r}")
        if problems:
            raise CsvColumnsError(problems)
        return cls(dict(fields), dict(properties))

    def header_problems(self, header: list[str]) -> list[str]:
        """What stops this map from reading a file with ``header``: missing or ambiguous columns."""
        names = [name.strip() for name in header]
        wanted = [*self.fields.items(), *((f"user_properties[{k}]", v) for k, v in self.properties.items())]
        missing = [f"{column!r} (for {field})" for field, column in wanted if column not in names]
        problems = []
        if missing:
            problems.append(f"missing mapped column(s) {', '.join(missing)}; the header has {', '.join(header)}")
        for column in dict.fromkeys(column for _, column in wanted):
            positions = [str(i + 1) for i, name in enumerate(names) if name == column]
            if len(positions) > 1:
                problems.append(
                    f"column {column!r} appears {len(positions)} times (columns {', '.join(positions)}): "
                    "rename all but one so the map is not ambiguous"
                )
        return problems


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


class _CsvLayout:
    """Builds records from the rows of one CSV file, once its header is known."""

    def __init__(self, columns: CsvColumns, header: list[str], label_separator: str) -> None:
        self.columns = columns
        self.index = {name.strip(): i for i, name in enumerate(header)}
        self.width = len(header)
        self.label_separator = label_separator

    def cell(self, row: list[str], field: str) -> str:
        """The cell of a mapped comment field, ``""`` when the field is not mapped."""
        column = self.columns.fields.get(field)
        return row[self.index[column]] if column is not None else ""

    def record(self, row: list[str], line: int, timestamps: TimestampRule | None) -> CommentRecord:
        """The record of one row.

        :raises RecordError: naming the CSV column and the comment field.
        """
        obj: dict[str, Any] = {"comment": self._comment(row)}
        names = [n.strip() for n in self.cell(row, "labels").split(self.label_separator) if n.strip()]
        if names:
            obj["labelling"] = [{"group": "default", "assigned": [{"name": n} for n in names]}]
        try:
            return record_from_object(obj, line, timestamps)
        except RecordError as exc:
            raise RecordError(self.field_name(exc.field), exc.message) from None

    def _comment(self, row: list[str]) -> dict[str, Any]:
        message: dict[str, Any] = {"body": {"text": self.cell(row, "text")}}
        if self.cell(row, "subject"):
            message["subject"] = {"text": self.cell(row, "subject")}
        if self.cell(row, "from"):
            message["from"] = self.cell(row, "from")
        recipients = [a.strip() for a in self.cell(row, "to").split(";") if a.strip()]
        if recipients:
            message["to"] = recipients
        comment: dict[str, Any] = {
            "id": self.cell(row, "id"),
            "timestamp": self.cell(row, "timestamp"),
            "messages": [message],
        }
        if self.cell(row, "thread_id"):
            comment["thread_id"] = self.cell(row, "thread_id")
        if self.columns.properties:
            comment["user_properties"] = self._properties(row)
        return comment

    def _properties(self, row: list[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key, column in self.columns.properties.items():
            value = row[self.index[column]]
            if property_kind(key) == "string":
                values[key] = value
            elif value.strip():
                values[key] = _csv_number(value.strip(), f"column {column!r} (user_properties[{key!r}])")
        return values

    def field_name(self, field_path: str) -> str:
        """Name the CSV column behind a comment field: ``column 'ts' (comment.timestamp)``."""
        for prefix, key in _CSV_SOURCES.items():
            if field_path.startswith(prefix) and key in self.columns.fields:
                return f"column {self.columns.fields[key]!r} ({field_path})"
        return field_path


def _csv_number(text: str, where: str) -> int | float:
    if not _CSV_NUMBER.fullmatch(text):
        raise RecordError(where, f"{text!r} is not a number")
    value = float(text) if any(c in text for c in ".eE") else int(text)
    if not math.isfinite(value):
        raise RecordError(where, f"{text!r} is too large for a number")
    return value


#: A byte that is not UTF-8, as ``surrogateescape`` decodes it.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _csv_rows(handle: IO[bytes], delimiter: str) -> Iterator[tuple[int, list[str] | str]]:
    """``(line where the row starts, cells)``, or ``(line, message)`` for text that is not CSV (then stops).

    Bytes that are not UTF-8 are read as escapes (``surrogateescape``), so the rows keep their
    lines and the row that holds one says which column (:func:`_undecodable_cell`).
    """
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, f"is not valid CSV: {exc}"
            return
        yield start, row
        start = reader.line_num + 1


def _undecodable_cell(row: list[str], header: list[str] | None) -> tuple[str, str] | None:
    """``(field, message)`` for a row holding a byte that is not UTF-8, a NUL byte or a byte order
    mark, else ``None``."""
    for index, cell in enumerate(row):
        if cell.isascii() and "\x00" not in cell:
            continue
        column = header[index].strip() if header is not None and index < len(header) else None
        where = f"column {column!r}" if column is not None else f"column {index + 1}"
        if header is None and index == 0 and cell.startswith(("\udcff\udcfe", "\udcfe\udcff")):
            return where, "starts with a UTF-16 byte order mark: the file is UTF-16; save it as UTF-8"
        if "\x00" in cell:
            return where, (
                f"holds a NUL byte (at character {cell.index(chr(0)) + 1} of the cell): CSV files are UTF-8 text "
                "(a UTF-16 file, or a binary file?)"
            )
        bad = _ESCAPED_BYTE.search(cell)
        if bad is not None:
            byte = ord(bad.group()) - 0xDC00
            return where, f"is not valid UTF-8 (byte 0x{byte:02x} at character {bad.start() + 1} of the cell)"
        if index == 0 and cell.startswith("\ufeff"):
            return where, (
                "starts with a byte order mark (U+FEFF) in the middle of the file (files joined together?): "
                "only the file's first line may have one"
            )
    return None


def read_csv(
    handle: IO[bytes],
    columns: Mapping[str, Any] | CsvColumns,
    *,
    label_separator: str = ";",
    delimiter: str = ",",
    timestamps: TimestampRule | None = None,
) -> ReadResult:
    """Yield a :class:`CommentRecord` per CSV row, or ``(line, field, message)`` for a bad row.

    :param handle: the file, opened in binary mode (UTF-8, a byte order mark is ignored).
    :param columns: comment field -> CSV column: ``id``, ``timestamp``, ``text`` (required),
        ``subject``, ``from``, ``to`` (addresses separated by ``;``), ``thread_id``, ``labels``
        (label names separated by ``label_separator``) and ``user_properties`` (a map of property
        key such as ``"string:Channel"`` to CSV column; ``number:`` cells are parsed as numbers,
        an empty one is left out).
    :param timestamps: how timestamps are read (default: RFC 3339, no offset meaning UTC).
    :raises CsvColumnsError: if ``columns`` cannot work, before any row is read.
    """
    layout_columns = columns if isinstance(columns, CsvColumns) else CsvColumns.from_mapping(columns)
    rows = _csv_rows(handle, delimiter)
    first = next(rows, None)
    if first is None:
        return
    if isinstance(first[1], str):
        yield 1, "(header)", first[1]
        return
    undecodable = _undecodable_cell(first[1], None)
    if undecodable is not None:
        yield 1, "(header)", f"{undecodable[0]} {undecodable[1]}"
        return
    problems = layout_columns.header_problems(first[1])
    if problems:
        yield 1, "(header)", "; ".join(problems)
        return
    layout = _CsvLayout(layout_columns, first[1], label_separator)
    for line, row in rows:
        if isinstance(row, str):
            yield line, "(line)", row
            return
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != layout.width:
            yield line, "(row)", f"has {len(row)} cells; the header has {layout.width}"
            continue
        undecodable = _undecodable_cell(row, first[1])
        if undecodable is not None:
            yield line, *undecodable
            continue
        try:
            yield layout.record(row, line, timestamps)
        except RecordError as exc:
            yield line, exc.field, exc.message
        except Exception as exc:  # no rule names it: still this row's problem, never a traceback
            yield line, "(row)", unreadable(exc)


# -- choosing a reader ----------------------------------------------------------------------------


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
    csv_columns: Mapping[str, Any] | CsvColumns | None = None,
    label_separator: str = ";",
    csv_delimiter: str = ",",
    timestamps: TimestampRule | None = None,
) -> ReadResult:
    """Records of a JSONL or CSV file, as :func:`read_jsonl` / :func:`read_csv` yield them."""
    if fmt == "csv":
        return read_csv(
            handle,
            csv_columns or DEFAULT_CSV_COLUMNS,
            label_separator=label_separator,
            delimiter=csv_delimiter,
            timestamps=timestamps,
        )
    return read_jsonl(handle, timestamps=timestamps)


def raise_for_problems(path: str, problems: list[tuple[int, str, str]], total: int) -> None:
    """Raise :class:`CommunicationsMiningInputError` if any problem was found."""
    if total:
        raise CommunicationsMiningInputError(path, problems, total)
