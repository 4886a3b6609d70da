"""Inputs the API would refuse, or that crash a reader, are reported with file, line and field
before anything is sent (so before anything is billed); configuration mistakes are reported once.

Real HTTP against the emulator: each case checks that no ``sync`` request went out.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm.exceptions import CommunicationsMiningInputError
from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from tests.conftest import make_record, write_jsonl

GOOD = json.dumps(make_record("ok", "2026-10-01T00:00:00Z"))
COLUMNS = {"id": "id", "timestamp": "timestamp", "text": "text"}


def upload(workspace, path, **kwargs) -> CommunicationsMiningUploadCommentsOperator:
    kwargs.setdefault("dataset", workspace.dataset)
    return CommunicationsMiningUploadCommentsOperator(
        task_id="upload", source=workspace.source, input_path=str(path), **kwargs
    )


def syncs(emulator, workspace) -> int:
    return emulator.requests_to("POST /api/v1/sources/{project}/{name}/sync")


def refused(workspace, emulator, tmp_path, context, second_line: str, **kwargs) -> str:
    """Upload a good line and ``second_line``; return the error, having checked nothing was sent."""
    path = tmp_path / "in.jsonl"
    path.write_text(f"{GOOD}\n{second_line}\n", encoding="utf-8")
    before = syncs(emulator, workspace)
    with pytest.raises(CommunicationsMiningInputError) as info:
        upload(workspace, path, **kwargs).execute(context)
    assert syncs(emulator, workspace) == before, "something was sent before the file was refused"
    return str(info.value)


def comment_with(**fields) -> str:
    record = make_record("other", "2026-10-01T00:00:00Z")
    record["comment"].update(fields)
    return json.dumps(record)


def message_with(**fields) -> str:
    return comment_with(messages=[{"body": {"text": "hi"}, **fields}])


# -- timestamps -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
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
    ],
)
def test_timestamps_that_are_not_rfc3339_are_refused(workspace, emulator, tmp_path, context, timestamp):
    error = refused(workspace, emulator, tmp_path, context, comment_with(timestamp=timestamp))
    assert ":2: comment.timestamp: " in error


def test_a_message_sent_at_is_held_to_rfc3339_too(workspace, emulator, tmp_path, context):
    error = refused(workspace, emulator, tmp_path, context, message_with(sent_at="2026-10-01 12:00:00Z"))
    assert ":2: comment.messages[0].sent_at: " in error and "RFC 3339" in error


def test_rfc3339_forms_are_sent_in_utc(workspace, hook, tmp_path, context):
    stamps = ["2026-10-01T12:00:00+02:00", "2026-10-01t10:00:00.5z", "2026-10-01T10:00:00.123456789Z"]
    path = write_jsonl(tmp_path / "in.jsonl", [make_record(f"t{i}", s) for i, s in enumerate(stamps)])
    upload(workspace, path).execute(context)
    sent = [hook.get_comment(workspace.source, f"t{i}")["timestamp"] for i in range(3)]
    assert [datetime.fromisoformat(s.replace("Z", "+00:00")) for s in sent] == [
        datetime(2026, 10, 1, 10, 0, 0, tzinfo=timezone.utc),
        datetime(2026, 10, 1, 10, 0, 0, 500000, tzinfo=timezone.utc),
        datetime(2026, 10, 1, 10, 0, 0, 123456, tzinfo=timezone.utc),
    ]


def test_naive_timestamps_are_read_in_the_timezone_parameter_and_logged_once(
    workspace, hook, tmp_path, context, capsys
):
    path = write_jsonl(tmp_path / "in.jsonl", [make_record(f"n{i}", "2026-10-01T12:00:00") for i in range(3)])
    result = upload(workspace, path, timezone="Europe/Paris").execute(context)
    assert result["new"] == 3
    assert hook.get_comment(workspace.source, "n0")["timestamp"].startswith("2026-10-01T10:00:00")
    out = capsys.readouterr().out
    assert out.count("had no UTC offset") == 1
    assert "3 timestamps had no UTC offset and were read in Europe/Paris" in out


def test_naive_timestamps_default_to_utc_and_can_be_refused(workspace, hook, emulator, tmp_path, context):
    path = write_jsonl(tmp_path / "in.jsonl", [make_record("u0", "2026-10-01T12:00:00")])
    upload(workspace, path).execute(context)
    assert hook.get_comment(workspace.source, "u0")["timestamp"].startswith("2026-10-01T12:00:00")
    error = refused(
        workspace, emulator, tmp_path, context, comment_with(timestamp="2026-10-01T12:00:00"), timezone=None
    )
    assert ":2: comment.timestamp: '2026-10-01T12:00:00' has no UTC offset" in error


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [("2026-03-29T02:30:00", "does not exist in Europe/Paris"), ("2026-10-25T02:30:00", "happens twice")],
    ids=["dst-gap", "dst-overlap"],
)
def test_local_times_a_zone_skips_or_repeats_are_refused(workspace, emulator, tmp_path, context, timestamp, message):
    line = comment_with(timestamp=timestamp)
    error = refused(workspace, emulator, tmp_path, context, line, timezone="Europe/Paris")
    assert ":2: comment.timestamp: " in error and message in error


def test_an_unknown_timezone_fails_before_reading(workspace, tmp_path, context):
    path = write_jsonl(tmp_path / "in.jsonl", [make_record("z", "2026-10-01T00:00:00Z")])
    with pytest.raises(AirflowFailException, match="'Mars/Olympus' is not a time zone name"):
        upload(workspace, path, timezone="Mars/Olympus").execute(context)


# -- comment ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("comment_id", ["", "   ", ".", "..", "a\nb", "a\tb", "nul\x00", "del\x7f", "c1\x85"])
def test_ids_no_url_path_can_carry_are_refused(workspace, emulator, tmp_path, context, comment_id):
    error = refused(workspace, emulator, tmp_path, context, comment_with(id=comment_id))
    assert ":2: comment.id: " in error


def test_ids_with_url_reserved_characters_are_valid(workspace, tmp_path, context):
    ids = ["a/b", "a?b", "a#b", "100%", "with space", "x:y", "..a", "é/ü"]
    path = write_jsonl(tmp_path / "in.jsonl", [make_record(i, "2026-10-01T00:00:00Z") for i in ids])
    assert upload(workspace, path, dry_run=True).execute(context)["read"] == len(ids)


# -- documented limits and types ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        (message_with(to=["a@x"] * 2049), "comment.messages[0].to", "at most 2048"),
        (message_with(cc=[""]), "comment.messages[0].cc[0]", "1 to 512"),
        (message_with(bcc=["b" * 513]), "comment.messages[0].bcc[0]", "1 to 512"),
        (message_with(to="a@x"), "comment.messages[0].to", "list of addresses"),
        (message_with(**{"from": "f" * 513}), "comment.messages[0].from", "1 to 512"),
        (message_with(language=""), "comment.messages[0].language", "1 to 8"),
        (message_with(language="123456789"), "comment.messages[0].language", "1 to 8"),
        (message_with(language=5), "comment.messages[0].language", "1 to 8"),
        (message_with(subject={"text": "s" * 65537}), "comment.messages[0].subject.text", "at most 65536"),
        (message_with(signature={"text": 5}), "comment.messages[0].signature.text", "must be a string"),
        (
            comment_with(messages=[{"body": {"text": "x", "translated_from": "y" * 65537}}]),
            "comment.messages[0].body.translated_from",
            "at most 65536",
        ),
        (comment_with(messages=[{"body": {"text": "x"}}] * 2049), "comment.messages", "at most 2048"),
        (comment_with(thread_id=5), "comment.thread_id", "must be a string"),
        (comment_with(text_format="html"), "comment.text_format", "'markdown' or 'plain'"),
        (comment_with(attachments={"name": "a"}), "comment.attachments", "must be a list"),
        (
            comment_with(attachments=[{"name": "a", "size": 1, "content_type": "text/plain"}] * 129),
            "comment.attachments",
            "at most 128",
        ),
        (comment_with(attachments=[{"size": 1, "content_type": "t"}]), "comment.attachments[0].name", "string"),
        (
            comment_with(attachments=[{"name": "n" * 257, "size": 1, "content_type": "t"}]),
            "comment.attachments[0].name",
            "0 to 256",
        ),
        (
            comment_with(attachments=[{"name": "a", "size": "12", "content_type": "t"}]),
            "comment.attachments[0].size",
            "whole number",
        ),
        (
            comment_with(attachments=[{"name": "a", "size": 1.5, "content_type": "t"}]),
            "comment.attachments[0].size",
            "whole number",
        ),
        (
            comment_with(attachments=[{"name": "a", "size": 1, "content_type": "c" * 257}]),
            "comment.attachments[0].content_type",
            "0 to 256",
        ),
        (
            comment_with(user_properties={"number:Score": "12"}),
            "comment.user_properties['number:Score']",
            "finite number",
        ),
    ],
)
def test_documented_limits_and_types(workspace, emulator, tmp_path, context, line, field, message):
    error = refused(workspace, emulator, tmp_path, context, line)
    assert f":2: {field}: " in error and message in error


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
def test_numbers_json_cannot_carry_are_refused(workspace, emulator, tmp_path, context, text, field):
    error = refused(workspace, emulator, tmp_path, context, text)
    assert f":2: {field}: " in error


def test_a_too_large_number_in_a_csv_property_is_refused(workspace, emulator, tmp_path, context):
    path = tmp_path / "in.csv"
    path.write_text("id,timestamp,text,amount\n1,2026-10-01T00:00:00Z,a,1e400\n2,2026-10-01T00:00:00Z,b,1_000\n")
    columns = {**COLUMNS, "user_properties": {"number:Amount": "amount"}}
    before = syncs(emulator, workspace)
    with pytest.raises(CommunicationsMiningInputError) as info:
        upload(workspace, path, csv_columns=columns).execute(context)
    assert ":2: column 'amount' (user_properties['number:Amount']): '1e400' is too large" in str(info.value)
    assert ":3: column 'amount' (user_properties['number:Amount']): '1_000' is not a number" in str(info.value)
    assert syncs(emulator, workspace) == before


# -- input that crashed the reader ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "message"),
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
        ('{"comment": {"id": ' + "1" * 5000 + "}}", "(line)", "not valid JSON"),
    ],
    ids=["deep-nesting", "lone-surrogate-in-text", "lone-surrogate-in-id", "5000-digit-integer"],
)
def test_input_that_crashed_the_reader_is_a_line_error(workspace, emulator, tmp_path, context, text, field, message):
    error = refused(workspace, emulator, tmp_path, context, text)
    assert f":2: {field}: " in error and message in error


def test_a_surrogate_pair_escape_is_a_character(workspace, hook, tmp_path, context):
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"comment": {"id": "emoji", "timestamp": "2026-10-01T00:00:00Z", "messages": [{"body": '
        '{"text": "smile \\ud83d\\ude00"}}]}}\n'
    )
    assert upload(workspace, path).execute(context)["new"] == 1
    assert hook.get_comment(workspace.source, "emoji")["messages"][0]["body"]["text"] == "smile \U0001f600"


# -- label names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
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
def test_label_names_follow_the_documented_form(workspace, emulator, tmp_path, context, name, message):
    line = json.dumps(make_record("other", "2026-10-01T00:00:00Z", label=name))
    error = refused(workspace, emulator, tmp_path, context, line)
    assert ":2: labelling[0].assigned[0].name: " in error and message in error


def test_a_csv_label_with_a_bare_angle_bracket_is_refused(workspace, emulator, tmp_path, context):
    path = tmp_path / "in.csv"
    path.write_text("id,timestamp,text,label\n1,2026-10-01T00:00:00Z,a,Amount>1000\n")
    with pytest.raises(CommunicationsMiningInputError, match=r"in.csv:2: column 'label' \(labelling"):
        upload(workspace, path, csv_columns={**COLUMNS, "labels": "label"}).execute(context)


# -- csv_columns mistakes: once, at the start -----------------------------------------------------


def many_rows(tmp_path, header: str = "id,timestamp,text,channel", rows: int = 3000):
    path = tmp_path / "in.csv"
    lines = [header] + [f"{i},2026-10-01T00:00:00Z,text {i},chat" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({**COLUMNS, "user_properties": {"Channel": "channel"}}, "user property 'Channel' must start with 'string:'"),
        ({**COLUMNS, "sender": "channel"}, "unknown key 'sender'"),
        ({"id": "id", "text": "text"}, "'timestamp' must be mapped to a column"),
        ({**COLUMNS, "subject": 3}, "'subject' must name a column"),
        ({**COLUMNS, "user_properties": ["string:Channel"]}, "'user_properties' must map"),
        ("id,timestamp,text", "must be a map"),
    ],
    ids=["property-prefix", "unknown-key", "missing-required", "column-not-a-name", "properties-not-a-map", "string"],
)
def test_csv_columns_mistakes_are_reported_once_before_reading(
    workspace, emulator, tmp_path, context, columns, message
):
    path = many_rows(tmp_path)
    before = syncs(emulator, workspace)
    with pytest.raises(AirflowFailException) as info:
        upload(workspace, path, csv_columns=columns).execute(context)
    assert not isinstance(info.value, CommunicationsMiningInputError)
    assert str(info.value).startswith("csv_columns: ") and message in str(info.value)
    assert "more" not in str(info.value) and str(info.value).count(message) == 1
    assert syncs(emulator, workspace) == before


def test_every_csv_columns_mistake_is_listed_at_once(workspace, tmp_path, context):
    columns = {"id": "id", "text": "", "sender": "x", "user_properties": {"Channel": "channel", "number:": "n"}}
    with pytest.raises(AirflowFailException) as info:
        upload(workspace, many_rows(tmp_path, rows=3), csv_columns=columns).execute(context)
    for part in ("unknown key 'sender'", "'timestamp' must be mapped", "'text' must name a column",
                 "'Channel' must start with", "'number:' must start with"):  # fmt: skip
        assert part in str(info.value)


def test_a_duplicated_mapped_csv_header_is_one_header_error(workspace, tmp_path, context):
    path = many_rows(tmp_path, header="id,timestamp,text,text")
    with pytest.raises(CommunicationsMiningInputError) as info:
        upload(workspace, path, csv_columns=COLUMNS).execute(context)
    assert info.value.total == 1
    assert ":1: (header): column 'text' appears 2 times (columns 3, 4)" in str(info.value)


def test_a_duplicated_unmapped_csv_header_is_fine(workspace, tmp_path, context):
    path = tmp_path / "in.csv"
    path.write_text("id,timestamp,text,x,x\n1,2026-10-01T00:00:00Z,a,b,c\n")
    assert upload(workspace, path, csv_columns=COLUMNS, dry_run=True).execute(context)["read"] == 1


# -- empty input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.jsonl", ""), ("blank.jsonl", "\n  \n"), ("header.csv", "id,timestamp,text\n"), ("empty.csv", "")],
)
def test_empty_input_warns_and_returns_zero_counts_or_fails_on_request(
    workspace, emulator, tmp_path, context, capsys, name, content
):
    path = tmp_path / name
    path.write_text(content)
    before = syncs(emulator, workspace)
    result = upload(workspace, path).execute(context)
    assert result["read"] == result["new"] == 0 and result["billed"]["at_most"] == 0
    assert "holds no comments" in capsys.readouterr().out
    with pytest.raises(AirflowFailException, match="holds no comments"):
        upload(workspace, path, fail_on_empty=True).execute(context)
    assert syncs(emulator, workspace) == before
