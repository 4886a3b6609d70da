"""The upload operator's inputs: a refused record is reported with file, line and field before
anything is sent (so before anything is billed); what timestamps and ids become once sent;
configuration mistakes are reported once.

Each rule of the schema is a case of the validator's own tests
(``tests/unit/upload/test_comment_validation.py``); here the emulator's application runs in
process and each case that refuses checks that no ``sync`` request went out.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

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


# -- a refused record: how the operator says it ---------------------------------------------------


def test_a_refused_record_is_reported_with_file_line_and_field_and_nothing_is_sent(
    workspace, emulator, tmp_path, context
):
    """Every rule of the schema is a case of ``tests/unit/upload/test_comment_validation.py``."""
    error = refused(workspace, emulator, tmp_path, context, comment_with(thread_id=5))
    assert f"{tmp_path / 'in.jsonl'}:2: comment.thread_id: must be a string" in error


def test_a_refused_csv_row_names_its_column(workspace, emulator, tmp_path, context):
    path = tmp_path / "in.csv"
    path.write_text("id,timestamp,text,label\n1,2026-10-01T00:00:00Z,a,Amount>1000\n")
    with pytest.raises(CommunicationsMiningInputError, match=r"in.csv:2: column 'label' \(labelling"):
        upload(workspace, path, csv_columns={**COLUMNS, "labels": "label"}).execute(context)


# -- timestamps -----------------------------------------------------------------------------------


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


def test_an_unknown_timezone_fails_before_reading(workspace, tmp_path, context):
    path = write_jsonl(tmp_path / "in.jsonl", [make_record("z", "2026-10-01T00:00:00Z")])
    with pytest.raises(AirflowFailException, match="'Mars/Olympus' is not a time zone name"):
        upload(workspace, path, timezone="Mars/Olympus").execute(context)


# -- comment ids ----------------------------------------------------------------------------------


def test_ids_with_url_reserved_characters_are_valid(workspace, tmp_path, context):
    ids = ["a/b", "a?b", "a#b", "100%", "with space", "x:y", "..a", "é/ü"]
    path = write_jsonl(tmp_path / "in.jsonl", [make_record(i, "2026-10-01T00:00:00Z") for i in ids])
    assert upload(workspace, path, dry_run=True).execute(context)["read"] == len(ids)


# -- input that crashed the reader ----------------------------------------------------------------


def test_a_surrogate_pair_escape_is_a_character(workspace, hook, tmp_path, context):
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"comment": {"id": "emoji", "timestamp": "2026-10-01T00:00:00Z", "messages": [{"body": '
        '{"text": "smile \\ud83d\\ude00"}}]}}\n'
    )
    assert upload(workspace, path).execute(context)["new"] == 1
    assert hook.get_comment(workspace.source, "emoji")["messages"][0]["body"]["text"] == "smile \U0001f600"


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


# -- the official CLI's samples -------------------------------------------------------------------

CLI_SAMPLES = Path(__file__).resolve().parents[2] / "data" / "reinfer-cli-samples"


def test_the_cli_basic_sample_uploads_with_its_markup(workspace, hook, context):
    result = upload(workspace, CLI_SAMPLES / "basic.jsonl").execute(context)
    assert result["new"] == 2
    written = json.loads((CLI_SAMPLES / "basic.jsonl").read_text(encoding="utf-8").splitlines()[0])["comment"]
    stored = hook.get_comment(workspace.source, "1")
    assert stored["messages"][0]["body"] == written["messages"][0]["body"]
    assert stored["messages"][0]["signature"] == written["messages"][0]["signature"]


def test_an_audio_path_is_read_and_said_not_uploaded(workspace, context, capsys):
    result = upload(workspace, CLI_SAMPLES / "audio.jsonl").execute(context)
    assert result["new"] == 2
    assert "1 records name an audio_path" in capsys.readouterr().out
