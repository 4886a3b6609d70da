"""Label writes of the upload over real HTTP against the emulator: a rerun sends only what changed,
and the adaptive concurrency backs off under a rate limit without losing a label.

Writes and reads are counted with the emulator's per-route request counters; 429 answers with its
token bucket's counter.
"""

from __future__ import annotations

import copy
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook
from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from airflow_provider_cm.pipelines.comments.engine import annotation_limits
from tests.conftest import BANKING77_JSONL, NLUPP_JSONL, TOKEN, make_record, new_workspace, read_jsonl, write_jsonl

WRITE_ROUTE = "POST /api/_private/datasets/{project}/{name}/labellings/{uid}"
READ_ROUTE = "GET /api/_private/datasets/{project}/{name}/labellings"
SPAN = {"content_part": "body", "message_index": 0, "utf16_byte_start": 0, "utf16_byte_end": 8}


def upload(workspace, path, **kwargs) -> dict:
    kwargs.setdefault("dataset", workspace.dataset)
    operator = CommunicationsMiningUploadCommentsOperator(
        task_id="upload", source=workspace.source, input_path=str(path), **kwargs
    )
    return operator.execute({})


def counted_upload(emulator, workspace, path, **kwargs) -> tuple[dict, int, int]:
    """The upload's XCom, and the label writes and reads it sent."""
    writes, reads = emulator.requests_to(WRITE_ROUTE), emulator.requests_to(READ_ROUTE)
    result = upload(workspace, path, **kwargs)
    return result, emulator.requests_to(WRITE_ROUTE) - writes, emulator.requests_to(READ_ROUTE) - reads


def stored_annotations(hook, workspace, ids) -> dict[str, dict]:
    uids = [f"{workspace.source_id}.{i}" for i in ids]
    return {a["comment"]["id"]: a for a in hook.get_annotations(workspace.dataset, uids)}


def labels(*names: str, sentiment: str = "positive") -> list[dict]:
    return [{"group": "default", "assigned": [{"name": n, "sentiment": sentiment} for n in names]}]


def test_a_rerun_of_an_unchanged_labelled_file_writes_no_label(workspace, emulator, tmp_path):
    """BANKING77 labels and NLU++ labels and entities, in batches of 64: the rerun only reads."""
    records = read_jsonl(BANKING77_JSONL)[:300] + read_jsonl(NLUPP_JSONL)[:100]
    annotated = sum(1 for r in records if r.get("labelling") or r.get("entities"))
    path = write_jsonl(tmp_path / "in.jsonl", records)
    first, first_writes, first_reads = counted_upload(emulator, workspace, path, batch_size=64)
    assert (first["labelled"], first["labels_unchanged"], first_writes) == (annotated, 0, annotated)
    assert first_reads == 0  # every comment was new: there was nothing to read
    rerun, writes, reads = counted_upload(emulator, workspace, path, batch_size=64)
    assert (rerun["unchanged"], rerun["labelled"], rerun["labels_unchanged"], rerun["labels_rejected"]) == (
        400,
        0,
        annotated,
        0,
    )
    assert writes == 0
    assert 7 <= reads <= 2 * 7  # one or two reads for each of the 7 batches


def test_a_rerun_with_some_labels_changed_writes_exactly_those(hook, workspace, emulator, tmp_path):
    records = [make_record(f"r{i}", "2026-10-01T00:00:00Z", f"text {i}", "Billing > Refund") for i in range(60)]
    records[5]["labelling"] = labels("A", "B")
    first, _, _ = counted_upload(emulator, workspace, write_jsonl(tmp_path / "first.jsonl", records), batch_size=16)
    assert first["labelled"] == 60
    changed = copy.deepcopy(records)
    changed[5]["labelling"] = labels("B", "A")  # the same labels in another order: unchanged
    changed[3]["labelling"] = labels("Billing > Other")
    changed[10]["labelling"] = labels("Billing > Refund", sentiment="negative")
    changed[17]["labelling"][0]["dismissed"] = [{"name": "Spam"}]
    changed[25]["labelling"] = [{"group": "default", "assigned": []}]  # removes the label
    changed[31]["entities"] = {"assigned": [{"name": "amount", "formatted_value": "text 31", "span": SPAN}]}
    changed[40]["labelling"] = labels("Billing > Refund", "Card")
    changed.append(make_record("r60", "2026-10-01T00:00:00Z", "a new one", "New"))
    edited = [3, 10, 17, 25, 31, 40]
    rerun, writes, _ = counted_upload(
        emulator, workspace, write_jsonl(tmp_path / "second.jsonl", changed), batch_size=16
    )
    assert (rerun["new"], rerun["unchanged"]) == (1, 60)
    assert (rerun["labelled"], rerun["labels_unchanged"], rerun["labels_rejected"]) == (7, 54, 0)
    assert writes == 7
    now = stored_annotations(hook, workspace, [f"r{i}" for i in [*edited, 60]])
    for i in [*edited, 60]:
        record = changed[i]
        assert now[f"r{i}"]["labelling"] == record["labelling"], i
        if "entities" in record:
            assert now[f"r{i}"]["entities"]["assigned"] == record["entities"]["assigned"], i
    assert now["r17"]["labelling"][0]["dismissed"] == [{"name": "Spam"}]
    assert now["r25"]["labelling"] == [{"group": "default", "assigned": []}]


def test_entity_only_records_are_written_once_and_rewritten_only_when_an_entity_changes(
    hook, workspace, emulator, tmp_path
):
    records = [r for r in read_jsonl(NLUPP_JSONL) if r.get("entities") and not r.get("labelling")][:40]
    assert len(records) == 40
    path = write_jsonl(tmp_path / "entities.jsonl", records)
    first, first_writes, _ = counted_upload(emulator, workspace, path)
    assert (first["labelled"], first_writes) == (40, 40)
    rerun, writes, _ = counted_upload(emulator, workspace, path)
    assert (rerun["labelled"], rerun["labels_unchanged"], writes) == (0, 40, 0)
    edited = copy.deepcopy(records)
    edited[2]["entities"]["assigned"][0]["span"]["utf16_byte_end"] += 2
    edited[9]["entities"]["assigned"][0]["formatted_value"] = "changed"
    rerun, writes, _ = counted_upload(emulator, workspace, write_jsonl(tmp_path / "edited.jsonl", edited))
    assert (rerun["labelled"], rerun["labels_unchanged"], writes) == (2, 38, 2)
    ids = [edited[i]["comment"]["id"] for i in (2, 9)]
    now = stored_annotations(hook, workspace, ids)
    assert [now[i]["entities"]["assigned"] for i in ids] == [edited[i]["entities"]["assigned"] for i in (2, 9)]


def test_dismissed_only_records_are_written_once_and_rewritten_only_when_they_change(
    hook, workspace, emulator, tmp_path
):
    records = []
    for i in range(20):
        record = make_record(f"d{i}", "2026-10-01T00:00:00Z", f"text {i}")
        record["labelling"] = [{"group": "default", "dismissed": [{"name": "Spam"}]}]
        records.append(record)
    path = write_jsonl(tmp_path / "dismissed.jsonl", records)
    first, first_writes, _ = counted_upload(emulator, workspace, path)
    assert (first["labelled"], first_writes) == (20, 20)
    rerun, writes, _ = counted_upload(emulator, workspace, path)
    assert (rerun["labelled"], rerun["labels_unchanged"], writes) == (0, 20, 0)
    records[7]["labelling"][0]["dismissed"].append({"name": "Complaint"})
    rerun, writes, _ = counted_upload(emulator, workspace, write_jsonl(tmp_path / "edited.jsonl", records))
    assert (rerun["labelled"], rerun["labels_unchanged"], writes) == (1, 19, 1)
    assert stored_annotations(hook, workspace, ["d7"])["d7"]["labelling"] == records[7]["labelling"]


def test_records_of_one_id_leave_what_writing_them_in_order_would(hook, workspace, emulator, tmp_path):
    """With allow_duplicate_ids, the later line's kinds win and the earlier line's other kinds stay."""
    first = make_record("dup", "2026-10-01T00:00:00Z", "one", "A")
    first["entities"] = {"assigned": [{"name": "amount", "formatted_value": "one", "span": SPAN}]}
    second = make_record("dup", "2026-10-01T00:00:00Z", "two", "B")
    path = write_jsonl(tmp_path / "dups.jsonl", [first, make_record("other", "2026-10-01T00:00:00Z", "x", "C"), second])
    result, writes, _ = counted_upload(emulator, workspace, path, allow_duplicate_ids=True)
    assert (result["labelled"], writes) == (2, 2)  # counts are comments: one write for "dup"
    now = stored_annotations(hook, workspace, ["dup"])["dup"]
    assert now["labelling"] == second["labelling"]
    assert now["entities"]["assigned"] == first["entities"]["assigned"]


@pytest.fixture
def patient_conn(emulator) -> str:
    """A connection that keeps retrying through a long rate limit (the bucket's Retry-After is 1 s)."""
    conn_id = "cm_patient"
    extra = {"retry_max_attempts": 60, "retry_max_elapsed": 600}
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
        {"conn_type": "communications_mining", "host": emulator.url, "password": TOKEN, "extra": extra}
    )
    return conn_id


def cli_strategy(hook, workspace, records) -> None:
    """The official CLI's way: sync 128 comments, then their label writes 32 at a time, in turn."""
    with ThreadPoolExecutor(32) as pool:
        for i in range(0, len(records), 128):
            batch = records[i : i + 128]
            hook.sync_comments(workspace.source, [r["comment"] for r in batch])
            uids = [f"{workspace.source_id}.{r['comment']['id']}" for r in batch]
            list(
                pool.map(
                    lambda uid, r: hook.update_annotations(workspace.dataset, uid, labelling=r["labelling"]),
                    uids,
                    batch,
                )
            )


def throttled_run(emulator, run) -> int:
    """429 answers while ``run()`` meets a 100 requests/s token bucket at 100 ms a request."""
    emulator.admin("POST", "faults", {"latency": 0.1, "rate_limit": {"requests_per_second": 100, "burst": 10}})
    try:
        run()
        return emulator.stats()["throttled"]
    finally:
        emulator.admin("DELETE", "faults")


def test_under_a_rate_limit_the_writes_back_off_and_every_label_arrives(
    emulator, tmp_path, patient_conn, capsys, report
):
    """Against the CLI's fixed 32 label writes in flight, the adaptive limit meets far fewer 429s (256 comments:
    the CLI's two batches of 128; the operator backs off within its first hundred writes)."""
    records = read_jsonl(BANKING77_JSONL)[:256]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    baseline_hook = CommunicationsMiningHook(patient_conn, pool_size=40)
    baseline = new_workspace(baseline_hook)
    cli_429 = throttled_run(emulator, lambda: cli_strategy(baseline_hook, baseline, records))
    workspace = new_workspace(baseline_hook)
    results = []
    operator_429 = throttled_run(
        emulator, lambda: results.append(upload(workspace, path, communications_mining_conn_id=patient_conn))
    )
    [result] = results
    assert (result["new"], result["labelled"], result["labels_rejected"]) == (256, 256, 0)
    stored = {
        a["comment"]["id"]: a["labelling"]
        for a in baseline_hook.iter_annotations(workspace.dataset, workspace.source_id)
    }
    assert stored == {r["comment"]["id"]: r["labelling"] for r in records}
    line = re.search(
        r"Label reads and writes: up to (\d+) requests in flight .* ended at (\d+); "
        r".* (\d+) answered 429/503, (\d+) backoff",
        capsys.readouterr().out,
    )
    assert line, "the concurrency reached is logged"
    most, final, answered, backoffs = map(int, line.groups())
    report(
        f"Label writes, 256 BANKING77 comments, 100 ms latency, bucket of 100 requests/s: the CLI's strategy met "
        f"{cli_429} 429s; the operator {operator_429} (up to {most} in flight, limit ended at {final}, "
        f"{backoffs} backoffs)"
    )
    assert answered == operator_429  # the limiter saw every 429 the bucket answered, retried ones included
    assert backoffs >= 1
    assert operator_429 * 2 <= cli_429


@pytest.mark.parametrize(
    ("start", "most", "expected"),
    [(None, None, (32, 128)), (8, None, (8, 8)), (None, 4, (4, 4)), (None, 100, (32, 100)), (4, 32, (4, 32))],
)
def test_concurrency_parameters(start, most, expected):
    assert annotation_limits(start, most) == expected


@pytest.mark.parametrize(("start", "most"), [(0, None), (None, 0), (33, 32)])
def test_concurrency_parameters_that_cannot_work_are_refused(start, most):
    with pytest.raises(ValueError, match="annotation_concurrency"):
        CommunicationsMiningUploadCommentsOperator(
            task_id="t",
            source="p/s",
            input_path="x.jsonl",
            annotation_concurrency=start,
            max_annotation_concurrency=most,
        )


def test_the_hooks_connection_pool_holds_the_most_label_writes():
    operator = CommunicationsMiningUploadCommentsOperator(
        task_id="t", source="p/s", input_path="x.jsonl", max_annotation_concurrency=100, sync_concurrency=3
    )
    assert operator.hook_params["pool_size"] >= 100 + 3
