"""The upload's counts are true: progress lines cover the same comments, billed comments match the
emulator's billing counter (exactly where they can be known, else within the reported range),
and a comment stored without its labels is reported as stored.

Real HTTP against the emulator; lost answers come from its fault injection.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from airflow_provider_cm.exceptions import CommunicationsMiningRejectedRecordsError
from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from tests.conftest import TOKEN, make_record, new_workspace, read_jsonl, write_jsonl

PROGRESS = re.compile(
    r"Progress: (\d+) of (\d+) comments \([^)]*\): new=(\d+) updated=(\d+) unchanged=(\d+) rejected=(\d+) "
    r"annotated=(\d+)"
)
FAST_CONN = "cm_upload_counts"


@pytest.fixture(scope="module")
def fast_conn(emulator) -> str:
    """A connection whose retries take milliseconds, so fault runs are quick."""
    extra = {"timeout": 5, "retry_max_attempts": 6, "retry_initial_wait": 0.02, "retry_max_wait": 0.1}
    os.environ[f"AIRFLOW_CONN_{FAST_CONN.upper()}"] = json.dumps(
        {"conn_type": "communications_mining", "host": emulator.url, "password": TOKEN, "extra": extra}
    )
    return FAST_CONN


def records(n: int, prefix: str = "c", text: str = "text", channel: str = "email") -> list[dict]:
    out = []
    for i in range(n):
        record = make_record(f"{prefix}{i}", f"2026-10-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z", f"{text} {i}", "A > B")
        record["comment"]["user_properties"] = {"string:Channel": channel}
        out.append(record)
    return out


def upload(workspace, path, **kwargs) -> CommunicationsMiningUploadCommentsOperator:
    kwargs.setdefault("dataset", workspace.dataset)
    return CommunicationsMiningUploadCommentsOperator(
        task_id="upload", source=workspace.source, input_path=str(path), **kwargs
    )


def billed_range(result: dict) -> tuple[int, int]:
    return result["billed"]["at_least"], result["billed"]["at_most"]


def test_every_figure_on_a_progress_line_covers_the_same_comments(workspace, emulator, tmp_path, context, capsys):
    """Slow label writes let the next batch's sync finish first: its counts must wait for its labels."""
    path = write_jsonl(tmp_path / "in.jsonl", records(60))
    emulator.admin("POST", "faults", {"faults": [{"kind": "latency", "delay": 0.05, "path_contains": "/labellings/"}]})
    try:
        upload(workspace, path, batch_size=10, sync_concurrency=2, annotation_concurrency=4).execute(context)
    finally:
        emulator.admin("DELETE", "faults")
    lines = [tuple(map(int, m.groups())) for m in PROGRESS.finditer(capsys.readouterr().out)]
    assert len(lines) == 6
    for done, total, new, updated, unchanged, rejected, labelled in lines:
        assert total == 60
        assert new + updated + unchanged + rejected == done, lines
        assert labelled == done, lines  # every comment carries a label, so labels cover the same comments
    assert [line[0] for line in lines] == sorted(line[0] for line in lines)


def test_billed_is_exact_on_a_first_upload_and_on_an_unchanged_rerun(workspace, emulator, tmp_path, context):
    path = write_jsonl(tmp_path / "in.jsonl", records(30))
    before = emulator.billed()
    first = upload(workspace, path, batch_size=8).execute(context)
    middle = emulator.billed()
    second = upload(workspace, path, batch_size=8).execute(context)
    assert first["billed"] == {"at_least": 30, "at_most": 30, "exact": True, "why": []}
    assert middle - before == 30
    assert second["billed"] == {"at_least": 0, "at_most": 0, "exact": True, "why": []}
    assert emulator.billed() == middle


@pytest.mark.parametrize(
    ("change", "changed_texts"),
    [("metadata", 0), ("text", 10), ("both", 10)],
    ids=["metadata-only", "text-of-half", "text-and-metadata"],
)
def test_updates_report_a_range_that_holds_the_true_bill(workspace, emulator, tmp_path, context, change, changed_texts):
    """An update is billed only if its text changed, which the sync answer does not say."""
    original = records(20)
    upload(workspace, write_jsonl(tmp_path / "first.jsonl", original), dataset=None).execute(context)
    updated = records(20, channel="chat") if change != "text" else records(20)
    for record in updated[:changed_texts]:
        record["comment"]["messages"][0]["body"]["text"] += " (edited)"
    before = emulator.billed()
    result = upload(workspace, write_jsonl(tmp_path / "second.jsonl", updated), dataset=None).execute(context)
    billed = emulator.billed() - before
    low, high = billed_range(result)
    assert billed == changed_texts
    assert low <= billed <= high
    assert result["updated"] == (20 if change != "text" else changed_texts)
    assert (low, high) == (0, result["updated"]) and result["billed"]["exact"] is False
    assert any("metadata" in why for why in result["billed"]["why"])


@pytest.mark.parametrize("fault", ["drop_after", "truncate"])
def test_an_answer_lost_after_commit_widens_the_range_to_hold_the_true_bill(
    hook, emulator, fast_conn, tmp_path, context, capsys, fault
):
    """The retry of a committed sync sees its comments as unchanged; they may have been billed."""
    workspace = new_workspace(hook)
    path = write_jsonl(tmp_path / "in.jsonl", records(120))
    before = emulator.billed()
    emulator.admin("POST", "faults", {"faults": [{"kind": fault, "path_contains": "/sync", "every": 2}]})
    try:
        result = upload(workspace, path, batch_size=16, communications_mining_conn_id=fast_conn).execute(context)
    finally:
        emulator.admin("DELETE", "faults")
    billed = emulator.billed() - before
    low, high = billed_range(result)
    assert billed == 120
    assert result["new"] < 120, "no answer was lost: the test tests nothing"
    assert low <= billed <= high
    assert result["billed"]["exact"] is False and any("retried" in why for why in result["billed"]["why"])
    assert "Billed comments are a range because a sync request was retried" in capsys.readouterr().out


def test_a_sync_lost_for_good_counts_its_batch_as_possibly_billed(hook, emulator, fast_conn, tmp_path, context):
    """When every attempt's answer is lost the task fails, and the XCom says what may have been billed."""
    workspace = new_workspace(hook)
    path = write_jsonl(tmp_path / "in.jsonl", records(40))
    before = emulator.billed()
    emulator.admin("POST", "faults", {"faults": [{"kind": "drop_after", "path_contains": "/sync"}]})
    try:
        with pytest.raises(Exception, match="sync"):
            upload(
                workspace, path, batch_size=40, retry_max_attempts=2, communications_mining_conn_id=fast_conn
            ).execute(context)
    finally:
        emulator.admin("DELETE", "faults")
    billed = emulator.billed() - before
    result = context["ti"].xcom["return_value"]
    low, high = billed_range(result)
    assert billed == 40 and low <= billed <= high
    assert any("failed after it may have reached the server" in why for why in result["billed"]["why"])


def test_a_refused_label_write_reports_the_comment_as_stored(workspace, emulator, tmp_path, context):
    path = write_jsonl(tmp_path / "in.jsonl", records(10, prefix="lab"))
    before = emulator.billed()
    rule = {"kind": "status", "status": 400, "path_contains": f"/labellings/{workspace.source_id}.lab3"}
    emulator.admin("POST", "faults", {"faults": [rule]})
    try:
        with pytest.raises(CommunicationsMiningRejectedRecordsError) as info:
            upload(workspace, path).execute(context)
    finally:
        emulator.admin("DELETE", "faults")
    result = context["ti"].xcom["return_value"]
    assert (result["new"], result["rejected"], result["annotated"], result["annotations_rejected"]) == (10, 0, 9, 1)
    assert billed_range(result) == (10, 10) and emulator.billed() - before == 10
    message = str(info.value)
    assert "lab3" in message and "were stored" in message and "annotations" in message
    assert "rejected 1 record" not in message
    [dead] = read_jsonl(info.value.dead_letter_path)
    assert (dead["id"], dead["stage"], dead["stored"]) == ("lab3", "annotations", True)
    assert "stored in the source" in dead["outcome"]


def test_a_refused_comment_is_reported_as_not_stored(workspace, emulator, tmp_path, context):
    path = write_jsonl(tmp_path / "in.jsonl", records(10, prefix="ref"))
    emulator.admin("POST", "faults", {"reject_comment_ids": {"ref4": "not allowed"}})
    try:
        with pytest.raises(CommunicationsMiningRejectedRecordsError, match="not stored") as info:
            upload(workspace, path).execute(context)
    finally:
        emulator.admin("DELETE", "faults")
    result = context["ti"].xcom["return_value"]
    assert (result["new"], result["rejected"], result["annotated"], result["annotations_rejected"]) == (9, 1, 9, 0)
    [dead] = read_jsonl(info.value.dead_letter_path)
    assert (dead["id"], dead["stage"], dead["stored"]) == ("ref4", "sync", False)


def test_an_id_with_a_slash_is_stored_and_labelled(workspace, hook, tmp_path, context):
    """A comment id is a client-chosen string (reference 1.4); the hook percent-encodes ``/`` as ``%2F``."""
    ids = ["order/123", "a?b#c", "100%"]
    path = write_jsonl(tmp_path / "in.jsonl", [make_record(i, "2026-10-01T00:00:00Z", label="A") for i in ids])
    result = upload(workspace, path).execute(context)
    assert (result["new"], result["annotated"], result["rejected"], result["annotations_rejected"]) == (3, 3, 0, 0)
    assert hook.get_comment(workspace.source, "order/123")["id"] == "order/123"
    [annotated] = hook.get_annotations(workspace.dataset, [f"{workspace.source_id}.order/123"])
    assert annotated["labelling"][0]["assigned"][0]["name"] == "A"


@pytest.mark.parametrize("fault", [None, "drop_after", "truncate", "status 502", "status 503"])
def test_billed_range_on_banking77_against_the_billing_counter(
    hook, emulator, fast_conn, tmp_path, context, report, fault
):
    """500 real comments in 16 syncs of 32: a first upload (with the fault on every 3rd sync), then an unchanged
    rerun."""
    from tests.conftest import BANKING77_JSONL

    path = write_jsonl(tmp_path / "banking77.jsonl", read_jsonl(BANKING77_JSONL)[:500])
    workspace = new_workspace(hook)
    for run in ("first upload", "rerun"):
        before = emulator.billed()
        if fault and run == "first upload":
            kind, _, status = fault.partition(" ")
            rule = {"kind": kind, "path_contains": "/sync", "every": 3, **({"status": int(status)} if status else {})}
            emulator.admin("POST", "faults", {"faults": [rule]})
        try:
            result = upload(workspace, path, batch_size=32, communications_mining_conn_id=fast_conn).execute(context)
        finally:
            emulator.admin("DELETE", "faults")
        billed = emulator.billed() - before
        low, high = billed_range(result)
        report(
            f"Billed, BANKING77 500 comments, fault {fault or 'none'} on every 3rd sync, {run}: "
            f"new={result['new']} unchanged={result['unchanged']}; billing counter {billed}; "
            f"reported at least {low}, at most {high}"
        )
        assert low <= billed <= high
        if fault in (None, "status 503") or run == "rerun":
            assert low == high == billed
