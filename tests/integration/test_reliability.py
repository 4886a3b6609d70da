"""The upload, export and stream operators through a fault matrix on BANKING77.

Every cell injects one kind of fault, repeatedly, on one route an operator uses, and asserts
that the task still succeeds with nothing lost, nothing duplicated and nothing billed twice.
The measured table (retries taken per cell) is printed in the run's summary.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from typing import Any

import pytest

from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator
from airflow_provider_cm.operators.streams import CommunicationsMiningStreamFetchOperator
from tests.conftest import BANKING77_JSONL, TOKEN, new_workspace, read_jsonl, write_jsonl

#: Comments per cell, and batch and page sizes that split them into about as many requests as 2,000 comments
#: at 256 per sync, 100 per export page and 250 per stream batch did: each cell sends the requests and meets
#: the faults it did (retries taken: 7 sync, 4 label writes, 7 fetch and advance, 10 to 12 export pages for
#: 9 before: the export's 8 time slices each end on a page of their own), with a quarter of the comments.
RECORDS = 500
SYNC_BATCH = 64  # 8 sync requests
EXPORT_PAGE = 50
STREAM_BATCH = 63  # 8 stream batches
CONN_ID = "cm_reliability"
FAULTS: dict[str, dict[str, Any]] = {
    "429 Retry-After seconds": {"kind": "status", "status": 429, "retry_after": "1"},
    "429 Retry-After date": {"kind": "status", "status": 429},  # HTTP-date filled in per cell
    "500": {"kind": "status", "status": 500},
    "502": {"kind": "status", "status": 502},
    "503": {"kind": "status", "status": 503},
    "504": {"kind": "status", "status": 504},
    "dropped before body": {"kind": "drop"},
    "dropped mid-body (after commit)": {"kind": "drop_after"},
    "truncated JSON": {"kind": "truncate"},
    "no answer (read time-out)": {"kind": "hang", "delay": 3},
}
# Route -> how often the fault fires there: every k-th call, or the first N calls where the
# operator makes thousands of calls (one label write per comment).
ROUTES = {
    "POST sync": ("upload", "/sync", {"every": 2}),
    "POST labellings": ("upload", "/labellings/", {"count": 4}),
    "POST export": ("export", "/export", {"every": 3}),
    "POST fetch": ("stream", "/fetch", {"every": 2}),
    "POST advance": ("stream", "/advance", {"every": 2}),
}
SUMMARY: list[str] = []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Any, list[dict[str, Any]]]:
    records = read_jsonl(BANKING77_JSONL)[:RECORDS]
    return write_jsonl(tmp_path_factory.mktemp("corpus") / f"banking77-{RECORDS}.jsonl", records), records


#: What the cells of some faults change in the connection, so that each injected fault costs little
#: time and the matrix stays short; the requests sent, the faults met and the checks are the same.
#: Requests left unanswered (the emulator holds them 3 s): a 0.75 s read time-out instead of 1.5 s (the
#: requests of these cells are answered in a fraction of it; one that is not is retried like the rest).
#: 429 with Retry-After (1 s, or a date 1 s ahead): the wait is capped at 0.25 s. The fault fires on
#: every k-th call, not for a time, so waiting less meets the same faults; that ``Retry-After`` is
#: honoured (seconds and dates) is checked on its own in tests/integration/test_hook.py. Not on the
#: label writes: there the adaptive limiter's pacer also reads the refusals, and four quick retries
#: made it slow the label writes down (one run of 2,000 writes took 20 s instead of 4).
CELL_EXTRAS: dict[str, dict[str, Any]] = {
    "hang": {"timeout": 0.75},
    "retry_after": {"retry_retry_after_cap": 0.25},
}


def cell_conn(reliability_conn: str, fault: str, route: str) -> str:
    """The connection a cell's operator uses (see :data:`CELL_EXTRAS`)."""
    if FAULTS[fault]["kind"] == "hang":
        return f"{reliability_conn}_hang"
    if fault.startswith("429 Retry-After") and route != "POST labellings":
        return f"{reliability_conn}_retry_after"
    return reliability_conn


@pytest.fixture(scope="module")
def reliability_conn(emulator) -> str:
    """A connection with fast retries and a short read time-out, so the matrix runs in minutes; and one
    per entry of :data:`CELL_EXTRAS` (``CONN_ID`` + ``_`` + the entry's name)."""
    extra = {
        "timeout": 1.5,
        "retry_max_attempts": 8,
        "retry_initial_wait": 0.05,
        "retry_max_wait": 0.5,
        "retry_retry_after_cap": 5,
    }
    variants = {CONN_ID: extra, **{f"{CONN_ID}_{name}": {**extra, **more} for name, more in CELL_EXTRAS.items()}}
    for conn_id, extras in variants.items():
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
            {"conn_type": "communications_mining", "host": emulator.url, "password": TOKEN, "extra": extras}
        )
    return CONN_ID


@pytest.fixture(scope="module")
def loaded(emulator, reliability_conn, corpus) -> Any:
    """A workspace holding the corpus, for the export and stream cells (which only read)."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    workspace = new_workspace(hook)
    path, _ = corpus
    CommunicationsMiningUploadCommentsOperator(
        task_id="seed", source=workspace.source, dataset=workspace.dataset, input_path=str(path)
    ).execute({})
    workspace.hook = hook
    return workspace


def install(emulator, fault: str, path_contains: str, when: dict[str, Any]) -> int:
    rule = {**FAULTS[fault], "path_contains": path_contains, "method": "POST", **when}
    if fault == "429 Retry-After date":
        rule["retry_after"] = email.utils.formatdate(time.time() + 1, usegmt=True)
    emulator.admin("POST", "faults", {"faults": [rule]})
    return sum(emulator.stats()["faults_injected"].values())


def injected_since(emulator, before: int) -> int:
    return sum(emulator.stats()["faults_injected"].values()) - before


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_matrix(fault, route, emulator, reliability_conn, corpus, loaded, hook, tmp_path, context):
    operator_kind, path_contains, when = ROUTES[route]
    path, records = corpus
    conn_id = cell_conn(reliability_conn, fault, route)
    ids = [r["comment"]["id"] for r in records]
    billed_before = emulator.billed()
    before = install(emulator, fault, path_contains, when)
    try:
        if operator_kind == "upload":
            workspace = new_workspace(hook)
            result = CommunicationsMiningUploadCommentsOperator(
                task_id="upload",
                source=workspace.source,
                dataset=workspace.dataset,
                input_path=str(path),
                batch_size=SYNC_BATCH,
                communications_mining_conn_id=conn_id,
            ).execute(context)
            billed = emulator.billed() - billed_before
            delivered = [c["comment"]["id"] for c in hook.iter_export(workspace.dataset)]
            assert result["new"] + result["updated"] + result["unchanged"] == RECORDS
            assert result["labelled"] == RECORDS and result["rejected"] == 0
            labels = hook.get_annotations(workspace.dataset, [f"{workspace.source_id}.{ids[-1]}"])
            assert labels[0]["labelling"][0]["assigned"] == records[-1]["labelling"][0]["assigned"]
        elif operator_kind == "export":
            result = CommunicationsMiningExportDatasetOperator(
                task_id="export",
                dataset=loaded.dataset,
                output_path=str(tmp_path / "export.jsonl"),
                start="2026-10-01",
                end="2026-11-01",
                page_size=EXPORT_PAGE,
                communications_mining_conn_id=conn_id,
            ).execute(context)
            delivered = [line["comment"]["id"] for line in read_jsonl(result["path"])]
            billed = emulator.billed() - billed_before
        else:
            stream = f"s{abs(hash((fault, route))) % 10**8}"
            loaded.hook.put_stream(loaded.dataset, stream)
            loaded.hook.reset_stream(loaded.dataset, stream, "2000-01-01T00:00:00Z")
            result = CommunicationsMiningStreamFetchOperator(
                task_id="fetch",
                dataset=loaded.dataset,
                stream=stream,
                output_path=str(tmp_path / "stream.jsonl"),
                batch_size=STREAM_BATCH,
                advance=True,
                max_results=100_000,
                communications_mining_conn_id=conn_id,
            ).execute(context)
            delivered = [line["comment"]["id"] for line in read_jsonl(result["path"])]
            billed = emulator.billed() - billed_before
    finally:
        retries = injected_since(emulator, before)
        emulator.admin("DELETE", "faults")
    lost = len(set(ids) - set(delivered))
    duplicated = len(delivered) - len(set(delivered))
    billed_twice = max(0, billed - (RECORDS if operator_kind == "upload" else 0))
    SUMMARY.append(f"| {fault} | {route} | 1 | {retries} | {lost} | {duplicated} | {billed_twice} |")
    assert retries > 0, "the fault never fired: the cell tests nothing"
    assert lost == 0 and duplicated == 0 and billed_twice == 0


def test_rate_limit_throttles_and_nothing_is_lost(emulator, reliability_conn, corpus, hook, context):
    """A token bucket of 10 requests/s (burst 10) against 32 sync batches sent two at a time: throttling is
    certain on any machine (it would take requests slower than 200 ms each to stay under it, however many
    batches follow the burst)."""
    path, records = corpus
    workspace = new_workspace(hook)
    billed_before = emulator.billed()
    emulator.admin("POST", "faults", {"rate_limit": {"requests_per_second": 10, "burst": 10}})
    try:
        result = CommunicationsMiningUploadCommentsOperator(
            task_id="upload",
            source=workspace.source,
            input_path=str(path),
            batch_size=16,
            communications_mining_conn_id=reliability_conn,
        ).execute(context)
        throttled = emulator.stats()["throttled"]
    finally:
        emulator.admin("DELETE", "faults")
    delivered = [c["comment"]["id"] for c in hook.iter_export(workspace.dataset)]
    billed = emulator.billed() - billed_before
    SUMMARY.append(
        f"| token bucket, 10 requests/s | POST sync ({-(-RECORDS // 16)} batches) | 1 | {throttled} | "
        f"{RECORDS - len(set(delivered))} | {len(delivered) - len(set(delivered))} | {billed - RECORDS} |"
    )
    assert throttled > 0
    assert result["new"] == RECORDS and sorted(delivered) == sorted(r["comment"]["id"] for r in records)
    assert billed == RECORDS


def test_zz_print_matrix(report):
    """Put the measured matrix in the run's summary (runs last in this module)."""
    report(f"Reliability matrix (BANKING77, {RECORDS:,} comments per cell):")
    report("| fault | route | runs | retries taken | comments lost | duplicated | billed twice |")
    report("| --- | --- | --- | --- | --- | --- | --- |")
    for line in SUMMARY:
        report(line)
