"""The client's validator, alone: each record the API would refuse is reported with its line and
field, no server and no workspace (the JSONL and CSV readers and the one schema of a comment).

The emulator refuses what the schema refuses, in the same words (its application in process); the
official CLI's sample files pass. That the operator sends nothing from a file with such a record is
``tests/integration/test_upload_invalid_file.py``; how it reports the problems is
``tests/unit/test_upload_inputs.py``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from airflow_provider_cm.api import comment_schema as schema
from airflow_provider_cm.pipelines.comments.comment_files import CommentRecord, read_csv, read_jsonl
from airflow_provider_cm.pipelines.comments.comment_validation import TimestampRule
from tests.conftest import TOKEN, make_record, new_workspace

GOOD = json.dumps(make_record("ok", "2026-10-01T00:00:00Z"))
COLUMNS = {"id": "id", "timestamp": "timestamp", "text": "text"}
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "reinfer-cli-samples"


def problems(text: str, timestamps: TimestampRule | None = None) -> list[tuple[int, str, str]]:
    """The problems the JSONL reader finds in ``text``."""
    items = list(read_jsonl(io.BytesIO(text.encode("utf-8", "surrogatepass")), timestamps=timestamps))
    return [item for item in items if not isinstance(item, CommentRecord)]


def refused(second_line: str, timestamps: TimestampRule | None = None) -> tuple[str, str]:
    """A good line then ``second_line``: the one problem, on line 2, as ``(field, message)``."""
    found = problems(f"{GOOD}\n{second_line}\n", timestamps)
    assert len(found) == 1 and found[0][0] == 2, found
    return found[0][1], found[0][2]


def comment_with(**fields: Any) -> dict[str, Any]:
    record = make_record("other", "2026-10-01T00:00:00Z")
    record["comment"].update(fields)
    return record


def message_with(**fields: Any) -> dict[str, Any]:
    return comment_with(messages=[{"body": {"text": "hi"}, **fields}])


# -- the cases: a comment the schema refuses, the field and words said ----------------------------

NOT_RFC3339 = [
    "2026-10-01 12:00:00Z",
    "20261001T120000Z",
    "2026-10-01T12:00Z",
    "2026-W40-4T12:00:00Z",
    "2026-10-01",
    "2026-10-01T12:00:00+0100",
    "2026-10-01T12:00:00+01",
    "2026-13-01T12:00:00Z",
    "2026-02-30T12:00:00Z",
    "2026-10-01T24:00:00Z",
    "2026-10-01T12:00:00+24:00",
    "２０２６-10-01T12:00:00Z",
    " 2026-10-01T12:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
]
BAD_IDS = ["", "   ", ".", "..", "a\nb", "a\tb", "nul\x00", "del\x7f", "c1\x85"]
ATTACHMENT = {"name": "a", "size": 1, "content_type": "text/plain"}

#: ``(record, field, words)``: a comment the schema refuses (in files and in requests alike).
COMMENT_CASES: list[tuple[dict[str, Any], str, str]] = [
    *((comment_with(timestamp=t), "comment.timestamp", "") for t in NOT_RFC3339),
    (comment_with(timestamp=5), "comment.timestamp", "must be a string"),
    (message_with(sent_at="2026-10-01 12:00:00Z"), "comment.messages[0].sent_at", "RFC 3339"),
    (message_with(sent_at="yesterday"), "comment.messages[0].sent_at", "RFC 3339"),
    *((comment_with(id=i), "comment.id", "") for i in BAD_IDS),
    (comment_with(id=5), "comment.id", "must be a string"),
    (message_with(to=["a@x"] * 2049), "comment.messages[0].to", "at most 2048"),
    (message_with(cc=[""]), "comment.messages[0].cc[0]", "must not be empty"),
    (message_with(bcc=["b" * 513]), "comment.messages[0].bcc[0]", "at most 512 characters"),
    (message_with(to="a@x"), "comment.messages[0].to", "must be a list"),
    (message_with(**{"from": "f" * 513}), "comment.messages[0].from", "at most 512 characters"),
    (message_with(language=""), "comment.messages[0].language", "must not be empty"),
    (message_with(language="123456789"), "comment.messages[0].language", "at most 8 characters"),
    (message_with(language=5), "comment.messages[0].language", "must be a string"),
    (message_with(subject={"text": "s" * 65537}), "comment.messages[0].subject.text", "at most 65536"),
    (message_with(subject={"text": 5}), "comment.messages[0].subject.text", "must be a string"),
    (message_with(signature={"text": 5}), "comment.messages[0].signature.text", "must be a string"),
    (message_with(body=5), "comment.messages[0].body", "must be an object"),
    (message_with(body={"translated_from": "x"}), "comment.messages[0].body.text", "is missing"),
    (
        comment_with(messages=[{"body": {"text": "x", "translated_from": "y" * 65537}}]),
        "comment.messages[0].body.translated_from",
        "at most 65536",
    ),
    (comment_with(messages=[{"body": {"text": "x"}}] * 2049), "comment.messages", "at most 2048"),
    (comment_with(messages=[]), "comment.messages", "must be a non-empty list"),
    (comment_with(messages=[5]), "comment.messages[0]", "must be an object"),
    (comment_with(thread_id=5), "comment.thread_id", "must be a string"),
    (comment_with(text_format="html"), "comment.text_format", "'markdown' or 'plain'"),
    (comment_with(attachments={"name": "a"}), "comment.attachments", "must be a list"),
    (comment_with(attachments=[ATTACHMENT] * 129), "comment.attachments", "at most 128"),
    (comment_with(attachments=[{"name": "a.pdf"}]), "comment.attachments[0].size", "is missing"),
    (comment_with(attachments=[{"name": "a.pdf", "size": 3}]), "comment.attachments[0].content_type", "is missing"),
    (comment_with(attachments=[{"size": 1, "content_type": "t"}]), "comment.attachments[0].name", "is missing"),
    (comment_with(attachments=[{**ATTACHMENT, "name": "n" * 257}]), "comment.attachments[0].name", "at most 256"),
    (comment_with(attachments=[{**ATTACHMENT, "size": "12"}]), "comment.attachments[0].size", "whole number"),
    (comment_with(attachments=[{**ATTACHMENT, "size": 1.5}]), "comment.attachments[0].size", "whole number"),
    (comment_with(attachments=[{**ATTACHMENT, "size": -1}]), "comment.attachments[0].size", "0 or more"),
    (
        comment_with(attachments=[{**ATTACHMENT, "content_type": "c" * 257}]),
        "comment.attachments[0].content_type",
        "at most 256",
    ),
    (
        comment_with(user_properties={"number:Score": "12"}),
        "comment.user_properties['number:Score']",
        "finite number",
    ),
    (comment_with(user_properties={"string:A": 5}), "comment.user_properties['string:A']", "must be a string"),
    (comment_with(user_properties={"Channel": "x"}), "comment.user_properties['Channel']", "'string:' or 'number:'"),
    (comment_with(user_properties=[]), "comment.user_properties", "must be an object"),
]
COMMENT_IDS = [f"{field}-{i}" for i, (_, field, _) in enumerate(COMMENT_CASES)]


@pytest.mark.parametrize(("record", "field", "words"), COMMENT_CASES, ids=COMMENT_IDS)
def test_a_comment_the_schema_refuses_is_reported_with_its_line_and_field(record, field, words):
    found_field, message = refused(json.dumps(record))
    assert found_field == field and words in message, (found_field, message)


def test_a_timestamp_error_says_what_rfc_3339_is():
    field, message = refused(json.dumps(comment_with(timestamp="2026-10-01 12:00:00Z")))
    assert field == "comment.timestamp" and "is not an RFC 3339 date-time" in message


def line_with(**changes: Any) -> str:
    """A JSONL line: a good record with some top-level or comment fields changed (None removes)."""
    record = make_record("other", "2026-10-01T00:00:00Z")
    for key, value in changes.items():
        target = record if key in ("labelling", "entities") else record["comment"]
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return json.dumps(record)


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ('{"comment": {"id": "x",', "(line)", "not valid JSON"),
        (line_with(id=None), "comment.id", "is missing"),
        (line_with(timestamp="01/10/2026"), "comment.timestamp", "is not an RFC 3339 date-time"),
        (line_with(labelling={"labels": ["A"]}), "labelling", "unknown labelling shape"),
        (line_with(labelling="A"), "labelling", "unknown labelling shape"),
        (
            line_with(labelling=[{"group": "default", "assigned": [{"sentiment": "positive"}]}]),
            "labelling[0].assigned[0].name",
            "must be a non-empty string",
        ),
        (line_with(id=42), "comment.id", "must be a string"),
        (line_with(messages=[{"body": "plain text"}]), "comment.messages[0].body", "must be an object"),
        (line_with(messages=[{"body": {"text": "x" * 65537}}]), "comment.messages[0].body.text", "at most 65536"),
        (line_with(user_properties={"Channel": "x"}), "comment.user_properties['Channel']", "'string:'"),
    ],
    ids=[
        "broken-json",
        "no-id",
        "bad-timestamp",
        "labelling-object",
        "labelling-string",
        "label-without-name",
        "id-wrong-type",
        "body-wrong-type",
        "huge-text",
        "property-prefix",
    ],
)
def test_a_bad_line_names_its_line_and_field(line, field, words):
    found_field, message = refused(line)
    assert found_field == field and words in message, (found_field, message)


# -- timestamps without an offset -----------------------------------------------------------------


def test_a_naive_timestamp_is_refused_when_no_zone_is_given():
    field, message = refused(json.dumps(comment_with(timestamp="2026-10-01T12:00:00")), TimestampRule(zone=None))
    assert (field, message) == (
        "comment.timestamp",
        "'2026-10-01T12:00:00' has no UTC offset: add 'Z' or '+HH:MM', or pass timezone",
    )


@pytest.mark.parametrize(
    ("timestamp", "words"),
    [("2026-03-29T02:30:00", "does not exist in Europe/Paris"), ("2026-10-25T02:30:00", "happens twice")],
    ids=["dst-gap", "dst-overlap"],
)
def test_local_times_a_zone_skips_or_repeats_are_refused(timestamp, words):
    field, message = refused(json.dumps(comment_with(timestamp=timestamp)), TimestampRule(ZoneInfo("Europe/Paris")))
    assert field == "comment.timestamp" and words in message


# -- values JSON cannot carry, input that crashed the reader --------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"comment": {"id": "x", "timestamp": "2026-10-01T00:00:00Z", "messages": [{"body": {"text": "a"}}], '
         '"user_properties": {"number:Amount": 1e400}}}', "comment.user_properties['number:Amount']"),
        ('{"comment": {"id": "x", "timestamp": "2026-10-01T00:00:00Z", "messages": [{"body": {"text": "a"}}]}, '
         '"labelling": [{"group": "default", "assigned": [{"name": "A", "metadata": {"w": -1e999}}]}]}',
         "labelling[0].assigned[0].metadata.w"),
        ('{"comment": {"id": "x", "timestamp": "2026-10-01T00:00:00Z", "messages": [{"body": {"text": "a"}}], '
         '"user_properties": {"number:Amount": Infinity}}}', "(line)"),
        ('{"comment": {"id": "x", "timestamp": "2026-10-01T00:00:00Z", "messages": [{"body": {"text": "a"}}], '
         '"user_properties": {"number:Amount": NaN}}}', "(line)"),
    ],
    ids=["1e400", "nested-minus-1e999", "Infinity-word", "NaN-word"],
)  # fmt: skip
def test_numbers_json_cannot_carry_are_refused(text, field):
    assert refused(text)[0] == field


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "(line)", "nested too deeply"),
        (
            '{"comment": {"id": "x", "timestamp": "2026-10-01T00:00:00Z", "messages": [{"body": '
            '{"text": "half \\ud800 a pair"}}]}}',
            "comment.messages[0].body.text",
            "lone UTF-16 surrogate",
        ),
        (
            '{"comment": {"id": "x\\udfff", "timestamp": "2026-10-01T00:00:00Z", '
            '"messages": [{"body": {"text": "a"}}]}}',
            "comment.id",
            "lone UTF-16 surrogate",
        ),
        ('{"comment": {"id": ' + "1" * 5000 + "}}", "comment.id", "integer of more than 4,300 digits"),
    ],
    ids=["deep-nesting", "lone-surrogate-in-text", "lone-surrogate-in-id", "5000-digit-integer"],
)
def test_input_that_crashed_the_reader_is_a_line_error(text, field, words):
    found_field, message = refused(text)
    assert found_field == field and words in message


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        ([1], "(record)", "must be a JSON object with a 'comment'"),
        ({"labelling": []}, "comment", "is missing"),
        ({**make_record("x", "2026-10-01T00:00:00Z"), "extra": 1, "more": 2}, "extra, more", "unsupported field"),
        ({**make_record("x", "2026-10-01T00:00:00Z"), "moon_forms": "x"}, "moon_forms", "must be a list"),
        ({**make_record("x", "2026-10-01T00:00:00Z"), "audio_path": 5}, "audio_path", "must be a string"),
    ],
    ids=["not-an-object", "no-comment", "unknown-fields", "moon-forms-not-a-list", "audio-path-not-a-string"],
)
def test_the_record_around_the_comment_is_checked_too(record, field, words):
    found_field, message = refused(json.dumps(record))
    assert found_field == field and words in message


# -- label names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Amount>1000", "'Amount > 1000' for a hierarchy"),
        ("Billing >Refund", "not the level separator"),
        ("Billing  > Refund", "without surrounding spaces"),
        ("Billing >  > Refund", "1 to 64 characters"),
        (" > Refund", "not the level separator"),
        ("A" * 65, "1 to 64 characters"),
        (" > ".join(["L"] * 65), "at most 64"),
    ],
)
def test_label_names_follow_the_documented_form(name, words):
    field, message = refused(json.dumps(make_record("other", "2026-10-01T00:00:00Z", label=name)))
    assert field == "labelling[0].assigned[0].name" and words in message


# -- CSV ------------------------------------------------------------------------------------------


def csv_problems(text: str, columns: dict[str, Any]) -> list[Any]:
    return [i for i in read_csv(io.BytesIO(text.encode()), columns) if not isinstance(i, CommentRecord)]


def test_a_too_large_number_in_a_csv_property_is_refused():
    text = "id,timestamp,text,amount\n1,2026-10-01T00:00:00Z,a,1e400\n2,2026-10-01T00:00:00Z,b,1_000\n"
    found = csv_problems(text, {**COLUMNS, "user_properties": {"number:Amount": "amount"}})
    where = "column 'amount' (user_properties['number:Amount'])"
    assert [(line, field) for line, field, _ in found] == [(2, where), (3, where)]
    assert "'1e400' is too large" in found[0][2] and "'1_000' is not a number" in found[1][2]


def test_a_csv_label_with_a_bare_angle_bracket_is_refused():
    text = "id,timestamp,text,label\n1,2026-10-01T00:00:00Z,a,Amount>1000\n"
    found = csv_problems(text, {**COLUMNS, "labels": "label"})
    assert len(found) == 1 and found[0][:2] == (2, "column 'label' (labelling[0].assigned[0].name)")


# -- the official CLI's samples -------------------------------------------------------------------

SAMPLE_FILES = sorted(SAMPLES.glob("*.jsonl"))


def test_the_cli_samples_are_all_here():
    assert [p.name for p in SAMPLE_FILES] == [
        "audio.jsonl",
        "basic.jsonl",
        "duplicates.jsonl",
        "labelling.jsonl",
        "legacy_labelling.jsonl",
        "many.jsonl",
        "moon_forms.jsonl",
    ]


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=[p.name for p in SAMPLE_FILES])
def test_every_cli_sample_file_passes_validation(path):
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with path.open("rb") as handle:
        items = list(read_jsonl(handle))
    assert [i for i in items if not isinstance(i, CommentRecord)] == []
    assert len(items) == len(lines)


def test_any_json_markup_is_sent_as_written():
    """``text_markup`` is any JSON (the CLI's ``Option<JsonValue>``): the first sample's goes out unchanged."""
    first = json.loads((SAMPLES / "basic.jsonl").read_text(encoding="utf-8").splitlines()[0])
    [record, _] = list(read_jsonl((SAMPLES / "basic.jsonl").open("rb")))
    sent = json.loads(json.dumps(schema.msgspec.to_builtins(record.comment)))
    assert sent["messages"][0]["body"] == first["comment"]["messages"][0]["body"]
    assert sent["messages"][0]["signature"] == first["comment"]["messages"][0]["signature"]


# -- the emulator refuses what the schema refuses -------------------------------------------------


@pytest.fixture(scope="module")
def sync_url(emulator) -> str:
    """The ``sync`` route of a fresh source of the emulator's application in process."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    workspace = new_workspace(hook)
    hook.close()
    return f"{emulator.url}/api/v1/sources/{workspace.source}/sync"


@pytest.mark.parametrize(("record", "field", "words"), COMMENT_CASES, ids=COMMENT_IDS)
def test_the_emulator_refuses_what_the_schema_refuses_in_the_same_words(emulator, sync_url, record, field, words):
    _, message = refused(json.dumps(record))
    before = emulator.stats()["billed_comments"]
    response = requests.post(
        sync_url, json={"comments": [record["comment"]]}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    assert response.status_code == 400, response.text
    answer = response.json()
    comment_id = record["comment"].get("id")
    root = f"comments[0] (id {comment_id!r})" if isinstance(comment_id, str) and comment_id else "comments[0]"
    assert answer == {"status": "error", "message": f"{root}{field.removeprefix('comment')}: {message}"}
    assert emulator.stats()["billed_comments"] == before


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=[p.name for p in SAMPLE_FILES])
def test_the_emulator_accepts_every_cli_sample_comment(emulator, sync_url, path):
    comments = [json.loads(line)["comment"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    response = requests.post(
        sync_url, json={"comments": comments}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    assert response.status_code == 200, response.text
