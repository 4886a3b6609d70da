"""The upload operator over real HTTP against the emulator: validation, batching, labels, dead letters."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm.exceptions import CommunicationsMiningInputError, CommunicationsMiningRejectedRecordsError
from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from tests.conftest import NLUPP_JSONL, make_record, read_jsonl, write_jsonl

SYNC_ROUTE = "POST /api/v1/sources/{project}/{name}/sync"


def upload(workspace, path, **kwargs) -> CommunicationsMiningUploadCommentsOperator:
    kwargs.setdefault("dataset", workspace.dataset)
    return CommunicationsMiningUploadCommentsOperator(
        task_id="upload", source=workspace.source, input_path=str(path), **kwargs
    )


def good_records(n: int, prefix: str = "r") -> list[dict]:
    return [
        make_record(f"{prefix}{i}", f"2026-10-01T00:00:{i % 60:02d}Z", f"text {i}", "Billing > Refund")
        for i in range(n)
    ]


def test_uploads_comments_and_labels(workspace, hook, emulator, tmp_path, context):
    path = write_jsonl(tmp_path / "in.jsonl", good_records(25))
    result = upload(workspace, path, batch_size=10).execute(context)
    assert result == {
        "read": 25, "new": 25, "updated": 0, "unchanged": 0, "rejected": 0, "annotated": 25,
        "annotations_unchanged": 0, "annotations_rejected": 0,
        "labelled": 25, "labels_unchanged": 0, "labels_rejected": 0,  # deprecated aliases until 0.3
        "billed": {"at_least": 25, "at_most": 25, "exact": True, "why": []},
        "dead_letter_path": None, "dry_run": False,
    }  # fmt: skip
    [annotated] = hook.get_annotations(workspace.dataset, [f"{workspace.source_id}.r3"])
    assert annotated["labelling"][0]["assigned"] == [{"name": "Billing > Refund", "sentiment": "positive"}]


def test_second_upload_of_same_file_bills_nothing(workspace, emulator, tmp_path, context):
    path = write_jsonl(tmp_path / "in.jsonl", good_records(40))
    before = emulator.billed()
    first = upload(workspace, path).execute(context)
    middle = emulator.billed()
    second = upload(workspace, path).execute(context)
    assert first["new"] == 40 and middle - before == 40
    assert second["unchanged"] == 40 and second["new"] == second["updated"] == 0
    assert emulator.billed() == middle


def test_legacy_labelling_entities_and_multi_label(workspace, hook, tmp_path, context):
    records = read_jsonl(NLUPP_JSONL)[:60]
    legacy = make_record("legacy-1", "2026-10-01T00:00:00Z")
    legacy["labelling"] = {"assigned": [{"name": ["Parent", "Child"], "sentiment": "negative"}]}
    path = write_jsonl(tmp_path / "hotels.jsonl", [*records, legacy])
    result = upload(workspace, path, batch_size=16).execute(context)
    annotated_in_file = sum(1 for r in records if r.get("labelling") or r.get("entities")) + 1
    assert result["new"] == 61 and result["labelled"] == annotated_in_file
    with_entities = next(r for r in records if r.get("entities"))
    uid = f"{workspace.source_id}.{with_entities['comment']['id']}"
    [annotated] = hook.get_annotations(workspace.dataset, [uid, f"{workspace.source_id}.legacy-1"])[:1]
    assert annotated["entities"]["assigned"] == with_entities["entities"]["assigned"]
    legacy_annotated = hook.get_annotations(workspace.dataset, [f"{workspace.source_id}.legacy-1"])[0]
    assert legacy_annotated["labelling"] == [
        {"group": "default", "assigned": [{"name": "Parent > Child", "sentiment": "negative"}]}
    ]


def test_rejected_record_goes_to_dead_letter_and_the_rest_upload(workspace, hook, emulator, tmp_path, context):
    records = good_records(64, prefix="d")
    path = write_jsonl(tmp_path / "batch.jsonl", records)
    emulator.admin("POST", "faults", {"reject_comment_ids": {"d37": "text contains a forbidden value"}})
    try:
        with pytest.raises(CommunicationsMiningRejectedRecordsError, match="d37") as info:
            upload(workspace, path, batch_size=64).execute(context)
    finally:
        emulator.admin("DELETE", "faults")
    result = context["ti"].xcom["return_value"]
    assert result["new"] == 63 and result["rejected"] == 1 and result["labelled"] == 63
    dead = read_jsonl(info.value.dead_letter_path)
    assert info.value.dead_letter_path == str(tmp_path / "batch.rejected.jsonl")  # beside the local input, local
    assert [(d["id"], d["line"], d["stage"], d["status_code"]) for d in dead] == [("d37", 38, "sync", 400)]
    assert "forbidden value" in dead[0]["error"] and dead[0]["record"] == records[37]
    exported = {c["comment"]["id"] for c in hook.iter_export(workspace.dataset)}
    assert exported == {f"d{i}" for i in range(64)} - {"d37"}


def test_tolerated_rejections_do_not_fail(workspace, emulator, tmp_path, context):
    path = write_jsonl(tmp_path / "batch.jsonl", good_records(8, prefix="t"))
    emulator.admin("POST", "faults", {"reject_comment_ids": {"t2": "no"}})
    try:
        result = upload(
            workspace, path, fail_on_rejected=False, dead_letter_path=str(tmp_path / "dl" / "rejects.jsonl")
        ).execute(context)
    finally:
        emulator.admin("DELETE", "faults")
    assert result["rejected"] == 1 and result["new"] == 7
    assert result["dead_letter_path"] == f"{tmp_path}/dl/rejects.jsonl"  # a local path stays a local path


def test_dry_run_sends_nothing(workspace, emulator, tmp_path, context):
    path = write_jsonl(tmp_path / "in.jsonl", good_records(10))
    syncs_before = emulator.requests_to(SYNC_ROUTE)
    result = upload(workspace, path, dry_run="true").execute(context)
    assert result["read"] == 10 and result["new"] == 0 and result["dry_run"] is True
    assert emulator.requests_to(SYNC_ROUTE) == syncs_before


def test_max_comments_refuses_before_sending(workspace, emulator, tmp_path, context):
    path = write_jsonl(tmp_path / "in.jsonl", good_records(10))
    syncs_before = emulator.requests_to(SYNC_ROUTE)
    with pytest.raises(AirflowFailException, match="max_comments=5"):
        upload(workspace, path, max_comments=5).execute(context)
    assert emulator.requests_to(SYNC_ROUTE) == syncs_before


def test_dataset_must_cover_source(workspace, hook, tmp_path, context):
    hook.create_dataset(f"{workspace.project}/other", source_ids=[])
    path = write_jsonl(tmp_path / "in.jsonl", good_records(2))
    with pytest.raises(AirflowFailException, match="does not cover source"):
        upload(workspace, path, dataset=f"{workspace.project}/other").execute(context)
    with pytest.raises(AirflowFailException, match="does not exist"):
        upload(workspace, path, dataset=f"{workspace.project}/missing").execute(context)


# -- bad input: every case names the file, the line and the field ---------------------------------
# (each rule of a record is a case of tests/unit/upload/test_comment_validation.py)

GOOD = json.dumps(make_record("ok", "2026-10-01T00:00:00Z"))


@pytest.mark.parametrize(
    ("second_line", "field", "message"),
    [
        ('{"comment": {"id": "x",', "(line)", "not valid JSON"),
        (GOOD, "comment.id", "duplicate id 'ok' (first on line 1)"),
    ],
    ids=["broken-json", "duplicate-id"],
)
def test_bad_jsonl_names_file_line_and_field(workspace, tmp_path, context, second_line, field, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{GOOD}\n{second_line}\n", encoding="utf-8")
    with pytest.raises(CommunicationsMiningInputError) as info:
        upload(workspace, path).execute(context)
    assert f"{path}:2: {field}: " in str(info.value)
    assert message in str(info.value)


def test_duplicate_ids_are_listed_in_file_order_among_other_problems(workspace, emulator, tmp_path, context):
    records = good_records(30, prefix="dup")
    lines = [json.dumps(r) for r in records]
    lines[4] = json.dumps(records[1])  # line 5 repeats line 2
    lines[6] = '{"comment": {"id": "x",'  # line 7 is not JSON
    lines[9] = json.dumps(records[1])  # line 10 repeats line 2 again
    lines[25] = json.dumps(records[20])  # line 26 repeats line 21
    path = tmp_path / "dups.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    syncs_before = emulator.requests_to(SYNC_ROUTE)
    with pytest.raises(CommunicationsMiningInputError) as info:
        upload(workspace, path).execute(context)
    assert [(line, field) for line, field, _ in info.value.problems] == [
        (5, "comment.id"), (7, "(line)"), (10, "comment.id"), (26, "comment.id"),
    ]  # fmt: skip
    assert info.value.total == 4
    assert info.value.problems[0][2] == "duplicate id 'dup1' (first on line 2)"
    assert info.value.problems[3][2] == "duplicate id 'dup20' (first on line 21)"
    assert emulator.requests_to(SYNC_ROUTE) == syncs_before


def test_colliding_id_hashes_are_not_called_duplicates(workspace, monkeypatch, tmp_path, context):
    from airflow_provider_cm.pipelines.comments.id_hashes import IdHashes

    # Every id gets the same hash: the second pass must compare the ids themselves.
    monkeypatch.setattr(IdHashes, "hash_of", staticmethod(lambda comment_id: 7))
    path = write_jsonl(tmp_path / "in.jsonl", good_records(12, prefix="col"))
    result = upload(workspace, path).execute(context)
    assert result["read"] == 12 and result["new"] == 12 and result["labelled"] == 12


def test_allow_duplicate_ids_uploads_the_later_line(workspace, hook, tmp_path, context):
    first = make_record("again", "2026-10-01T00:00:00Z", "first text", "Billing > Refund")
    later = make_record("again", "2026-10-01T00:00:00Z", "later text", "Billing > Refund")
    path = write_jsonl(tmp_path / "in.jsonl", [first, later])
    result = upload(workspace, path, allow_duplicate_ids=True).execute(context)
    assert result["read"] == 2
    assert hook.get_comment(workspace.source, "again")["messages"][0]["body"]["text"] == "later text"


def test_non_utf8_bytes_name_the_line(workspace, tmp_path, context, emulator):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + GOOD.replace("ok", "caf\xe9").encode("latin-1") + b"\n")
    syncs_before = emulator.requests_to(SYNC_ROUTE)
    with pytest.raises(CommunicationsMiningInputError, match=r"latin1.jsonl:2: \(line\): is not valid UTF-8"):
        upload(workspace, path).execute(context)
    assert emulator.requests_to(SYNC_ROUTE) == syncs_before  # nothing half-uploaded


def test_csv_missing_mapped_column(workspace, tmp_path, context):
    path = tmp_path / "in.csv"
    path.write_text("id,timestamp,body\n1,2026-10-01T00:00:00Z,hello\n", encoding="utf-8")
    with pytest.raises(CommunicationsMiningInputError) as info:
        upload(workspace, path).execute(context)
    assert f"{path}:1: (header): missing mapped column(s) 'text' (for text)" in str(info.value)


def test_csv_with_bom_quoted_newlines_and_bad_row(workspace, hook, tmp_path, context):
    path = tmp_path / "in.csv"
    path.write_bytes(
        "\ufeffid,timestamp,text,label,channel\n"
        '1,2026-10-01T00:00:00Z,"two\nlines",A > B,email\n'
        "2,not-a-time,x,,chat\n".encode()
    )
    columns = {"id": "id", "timestamp": "timestamp", "text": "text", "labels": "label",
               "user_properties": {"string:Channel": "channel"}}  # fmt: skip
    with pytest.raises(CommunicationsMiningInputError) as info:
        upload(workspace, path, csv_columns=columns).execute(context)
    assert f"{path}:4: column 'timestamp' (comment.timestamp): 'not-a-time' is not an RFC 3339 date-time" in str(
        info.value
    )
    path.write_bytes(path.read_bytes().replace(b"not-a-time", b"2026-10-01T01:00:00"))
    result = upload(workspace, path, csv_columns=columns).execute(context)
    assert result["new"] == 2 and result["labelled"] == 1
    comment = hook.get_comment(workspace.source, "1")
    assert comment["messages"][0]["body"]["text"] == "two\nlines"
    assert comment["user_properties"] == {"string:Channel": "email"}


def test_the_task_log_says_once_that_the_0_1_xcom_keys_are_deprecated(workspace, tmp_path, context, capfd):
    """The old keys are pushed with the new ones; a pull cannot warn (XCom hands back a plain dict): the push says."""
    path = write_jsonl(tmp_path / "in.jsonl", good_records(3))
    capfd.readouterr()
    result = upload(workspace, path).execute(context)
    out = capfd.readouterr().out
    assert out.count("0.1's names of") == 1, out[-3000:]
    assert (
        "This task's XCom return value also carries labelled, labels_unchanged, labels_rejected, 0.1's names of "
        "annotated, annotations_unchanged, annotations_rejected, with the same values: they are deprecated since "
        "airflow-provider-cm 0.2.0 and removed in 0.3; downstream tasks and templates should read the new keys"
    ) in out
    assert result["labelled"] == result["annotated"] == 3


def test_without_the_deprecated_xcom_keys_the_result_and_the_log_have_none_of_them(workspace, tmp_path, context, capfd):
    path = write_jsonl(tmp_path / "in.jsonl", good_records(3))
    capfd.readouterr()
    result = upload(workspace, path, deprecated_xcom_keys=False).execute(context)
    out = capfd.readouterr().out
    assert "0.1's names of" not in out and "Uploaded 3 comments" in out, out[-3000:]
    assert not {"labelled", "labels_unchanged", "labels_rejected"} & set(result)
    assert result["annotated"] == 3
