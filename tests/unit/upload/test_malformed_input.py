"""No comment file, however malformed, ends the check with anything but the documented error.

The whole check runs (:func:`~airflow_provider_cm.pipelines.comments.file_check.check_and_spool`: the JSONL or
CSV reader, the schema, the spool's encoding, the second pass that names duplicates) on arbitrary
bytes and on mutations of real files: the CLI's JSONL samples and BANKING77's JSONL and CSV lines.
It must return the file's counts or raise :class:`CommunicationsMiningInputError` whose problems
each name a line of the file, a field and a message that a rule gives (never the readers' safety
net, ``could not be read (<error>)``, which would mean a gap). Examples: ``tests/fuzzing.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_cm.exceptions import CommunicationsMiningInputChangedError, CommunicationsMiningInputError
from airflow_provider_cm.pipelines.comments.comment_files import CommentRecord, iter_records, read_jsonl, unreadable
from airflow_provider_cm.pipelines.comments.comment_validation import TimestampRule
from airflow_provider_cm.pipelines.comments.file_check import check_and_spool
from airflow_provider_cm.pipelines.comments.spool import SpooledRecord
from tests.conftest import BANKING77_CSV, BANKING77_JSONL, make_record
from tests.fuzzing import fuzz_settings, mutated

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "reinfer-cli-samples"
GAP = unreadable(Exception("")).split("(")[0]  # "could not be read "
COLUMNS = {"id": "id", "timestamp": "timestamp", "text": "text", "labels": "label",
           "user_properties": {"string:Channel": "channel"}}  # fmt: skip


def _head(path: Path, lines: int) -> bytes:
    with path.open("rb") as handle:
        return b"".join(line for _, line in zip(range(lines), handle, strict=False))


JSONL_SAMPLES = [p.read_bytes() for p in sorted(SAMPLES.glob("*.jsonl"))] + [_head(BANKING77_JSONL, 40)]
CSV_SAMPLES = [_head(BANKING77_CSV, 40)]


def check_file(data: bytes, fmt: str) -> None:
    """Check ``data`` as the upload does; fail on anything but its counts or the documented error."""
    lines = data.count(b"\n") + 1 + (data.count(b"\r") if fmt == "csv" else 0)

    def read(handle: IO[bytes]) -> Iterator[CommentRecord | tuple[int, str, str]]:
        return iter_records(handle, fmt, csv_columns=COLUMNS if fmt == "csv" else None)

    spool = io.BytesIO()
    try:
        checked = check_and_spool(
            lambda: contextlib.closing(io.BytesIO(data)), read, spool, where="in." + fmt, timestamps=TimestampRule()
        )
    except CommunicationsMiningInputError as exc:
        assert exc.total >= len(exc.problems) >= 1
        for line, field, message in exc.problems:
            assert 1 <= line <= lines, (line, field, message)
            assert field and message
            assert not message.startswith(GAP), f"line {line}, {field}: a gap in the reader: {message}"
        return
    records = [SpooledRecord.decode(raw) for raw in spool.getvalue().splitlines(keepends=True)]
    assert len(records) == checked.count
    for record in records:
        json.loads(record.comment_json.decode("utf-8"))  # strict UTF-8 JSON, as it is sent


@fuzz_settings(examples=60)
@given(mutated(JSONL_SAMPLES))
def test_mutated_jsonl_files_give_counts_or_the_documented_error(data):
    check_file(data, "jsonl")


@fuzz_settings(examples=60)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_as_jsonl_give_counts_or_the_documented_error(data):
    check_file(data, "jsonl")


@fuzz_settings(examples=60)
@given(mutated(CSV_SAMPLES))
def test_mutated_csv_files_give_counts_or_the_documented_error(data):
    check_file(data, "csv")


@fuzz_settings(examples=60)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_as_csv_give_counts_or_the_documented_error(data):
    check_file(b"id,timestamp,text,label,channel\n" + data, "csv")


# -- the cases of issue 26, each named ------------------------------------------------------------

GOOD = json.dumps(make_record("good", "2026-10-01T00:00:00Z")).encode()


def deeply_nested_line(levels: int = 100_000) -> bytes:
    """A record whose user property nests ``levels`` arrays (the report of issue 26)."""
    comment = make_record("deep", "2026-10-01T00:00:00Z")["comment"]
    head = json.dumps({"comment": {**comment, "user_properties": {"string:X": None}}})
    return head.replace("null", "[" * levels + "]" * levels).encode()


def problems_of(data: bytes, fmt: str = "jsonl") -> list[tuple[int, str, str]]:
    items = iter_records(io.BytesIO(data), fmt, csv_columns=COLUMNS if fmt == "csv" else None)
    return [item for item in items if not isinstance(item, CommentRecord)]


def test_a_value_nested_100000_levels_deep_on_the_second_line_names_the_line_and_field():
    assert problems_of(GOOD + b"\n" + deeply_nested_line() + b"\n") == [
        (2, "comment.user_properties['string:X']", "is nested too deeply to read (arrays or objects within each "
         "other beyond the JSON reader's limit)")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        (b'{"comment": {"id": ' + b"9" * 5000 + b"}}", "comment.id", "integer of more than 4,300 digits"),
        (b'{"comment": {"id": "a", "x": 1e400}}', "comment.x", "too large for JSON"),
        (GOOD.replace(b'"hello"', b'"\xff"'), "(line)", "not valid UTF-8 (byte 0xff"),
        (GOOD.replace(b'"hello"', b'"\xed\xa0\x80"'), "(line)", "not valid UTF-8 (byte 0xed"),
        (GOOD.replace(b'"hello"', b'"\\udfff"'), "comment.messages[0].body.text", "lone UTF-16 surrogate"),
        (GOOD.replace(b'"hello"', b'"a\x00b"'), "(line)", "Invalid control character"),
        (b"\xef\xbb\xbf" + GOOD, "(line)", "byte order mark (U+FEFF) in the middle of the file"),
        (GOOD[:-7], "(line)", "not valid JSON"),  # cut short
    ],
    ids=["huge-integer", "huge-float", "not-utf8", "encoded-surrogate", "surrogate-escape", "nul", "mid-file-bom",
         "truncated"],
)  # fmt: skip
def test_each_kind_of_unreadable_jsonl_line_names_its_line_and_field(line, field, words):
    [(number, found, message)] = problems_of(b"\xef\xbb\xbf" + GOOD + b"\n" + line)
    assert (number, found) == (2, field) and words in message, message


CSV_HEAD = b"id,timestamp,text,label,channel\n"
CSV_GOOD = b"a,2026-10-01T00:00:00Z,hello,A,chat\n"


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        (b"b,2026-10-01T00:00:00Z,he\xffllo,A,chat\n", "column 'text'", "not valid UTF-8 (byte 0xff at character 3"),
        (b"b,2026-10-01T00:00:00Z,hello,A,ch\x00at\n", "column 'channel'", "NUL byte"),
        (b"\xef\xbb\xbfb,2026-10-01T00:00:00Z,hello,A,chat\n", "column 'id'", "byte order mark"),
        (b"b,2026-10-01T00:00:00Z", "(row)", "has 2 cells"),  # cut short
    ],
    ids=["not-utf8", "nul", "mid-file-bom", "truncated"],
)
def test_each_kind_of_unreadable_csv_row_names_its_line_and_column(row, field, words):
    # many good rows after the bad one: the error is on the bad row's line, not a decoding chunk's later one
    [(number, found, message)] = problems_of(CSV_HEAD + CSV_GOOD + row + b"\n" + CSV_GOOD * 2000, "csv")
    assert (number, found) == (3, field) and words in message, message


def test_a_utf16_csv_file_is_said_to_be_utf16():
    [(number, field, message)] = problems_of((CSV_HEAD + CSV_GOOD).decode().encode("utf-16"), "csv")
    assert (number, field) == (1, "(header)") and "the file is UTF-16" in message


# -- a file that changes while it is read ---------------------------------------------------------


def _check_local(path: Path, read: Callable[[IO[bytes]], Iterator[CommentRecord | tuple[int, str, str]]]) -> None:
    check_and_spool(lambda: path.open("rb"), read, io.BytesIO(), where=str(path), timestamps=TimestampRule())


def test_a_file_written_to_while_it_is_read_fails_naming_it(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(json.dumps(make_record(f"c{i}", "2026-10-01T00:00:00Z")).encode() + b"\n"
                              for i in range(3)))  # fmt: skip

    def read_while_a_producer_appends(handle: IO[bytes]) -> Iterator[CommentRecord | tuple[int, str, str]]:
        for item in read_jsonl(handle):
            if isinstance(item, CommentRecord) and item.line == 1:
                with path.open("ab") as producer:
                    producer.write(json.dumps(make_record("late", "2026-10-01T00:00:00Z")).encode() + b"\n")
            yield item

    with pytest.raises(CommunicationsMiningInputChangedError) as info:
        _check_local(path, read_while_a_producer_appends)
    assert info.value.path == str(path) and "its size went from" in str(info.value)
    assert "nothing was sent" in str(info.value)


def test_a_file_changed_between_the_check_and_the_pass_naming_duplicates_fails_naming_it(tmp_path):
    """The second pass (ids repeat) must read what the first checked: an edit of the same size is caught."""
    path = tmp_path / "in.jsonl"
    lines = [make_record("same", "2026-10-01T00:00:00Z", "first"), make_record("same", "2026-10-01T00:00:00Z", "later")]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    opened = 0

    def open_file() -> IO[bytes]:
        nonlocal opened
        opened += 1
        if opened == 2:  # between the passes, an edit of the same size
            path.write_bytes(path.read_bytes().replace(b'"later"', b'"LATER"'))
        return path.open("rb")

    with pytest.raises(CommunicationsMiningInputChangedError) as info:
        check_and_spool(open_file, read_jsonl, io.BytesIO(), where=str(path), timestamps=TimestampRule())
    assert opened == 2 and "read other bytes than the first pass checked" in str(info.value)


def test_an_unchanged_file_read_twice_gives_its_duplicates(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(make_record("same", "2026-10-01T00:00:00Z")) + "\n" for _ in range(2)))
    with pytest.raises(CommunicationsMiningInputError) as info:
        _check_local(path, read_jsonl)
    assert info.value.problems == [(2, "comment.id", "duplicate id 'same' (first on line 1)")]
