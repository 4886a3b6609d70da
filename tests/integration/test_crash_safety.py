"""SIGKILL at several points, then a rerun: the results equal a clean run's, nothing is billed twice,
no final path ever holds a partial file, and a stream killed before advancing redelivers."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from tests import operator_runner
from tests.conftest import BANKING77_JSONL, new_workspace, read_jsonl, write_jsonl


def run_operator(
    module: str, cls: str, kwargs: dict[str, Any], kill_when: tuple[Any, str, int] | None = None
) -> dict[str, Any] | None:
    """Run an operator in a process of its own (:mod:`tests.operator_runner`); with ``kill_when=(emulator,
    route, n)``, SIGKILL it as soon as the emulator has served ``n`` more requests on ``route`` (a point
    in its work, not a time)."""
    if kill_when is not None:
        emulator, route, n = kill_when
        start = emulator.requests_to(route)
    process, results = operator_runner.start(module, cls, kwargs)
    if kill_when is None:
        return operator_runner.result(process, results, timeout=600)
    deadline = time.monotonic() + 300
    while process.is_alive() and time.monotonic() < deadline:
        if emulator.requests_to(route) - start >= n:
            process.kill()  # SIGKILL
            process.join()
            return None
        time.sleep(0.01)
    process.kill()
    pytest.fail(f"the {cls} ended before {n} requests to {route}: kill earlier")


#: The uploads' comments and sync batch size: 16 batches, so a kill after 1, 6 or 14 of them lands early,
#: mid-way and near the end of the work.
UPLOADED, UPLOAD_BATCH = 1000, 64
#: The comments the export and stream tests read (without labels: those tests read comments only); the
#: export's page and the stream's batch are small enough for hundreds of requests to kill among.
LOADED, EXPORT_PAGE, STREAM_BATCH = 2000, 8, 10

SYNC = "POST /api/v1/sources/{project}/{name}/sync"
EXPORT = "POST /api/v1/datasets/{project}/{name}/export"
ADVANCE = "POST /api/v1/datasets/{project}/{name}/streams/{stream}/advance"


@pytest.mark.parametrize("kill_at", [1, 6, 14])
def test_upload_killed_then_rerun_bills_each_comment_once(kill_at, emulator, hook, tmp_path):
    records = read_jsonl(BANKING77_JSONL)[:UPLOADED]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    workspace = new_workspace(hook)
    kwargs = {
        "source": workspace.source,
        "dataset": workspace.dataset,
        "input_path": str(path),
        "batch_size": UPLOAD_BATCH,
    }
    billed_before = emulator.billed()
    killed = run_operator("comments", "CommunicationsMiningUploadCommentsOperator", kwargs, (emulator, SYNC, kill_at))
    assert killed is None
    killed_billed = emulator.billed() - billed_before
    result = run_operator("comments", "CommunicationsMiningUploadCommentsOperator", kwargs)
    # The rerun writes the labels the killed run did not, and counts those it did as unchanged.
    assert result is not None and result["labelled"] + result["labels_unchanged"] == len(records)
    assert result["new"] == len(records) - killed_billed  # the rerun bills only what was not uploaded
    assert emulator.billed() - billed_before == len(records)
    exported = [c["comment"]["id"] for c in hook.iter_export(workspace.dataset)]
    assert sorted(exported) == sorted(r["comment"]["id"] for r in records)
    labelled = {
        a["comment"]["id"]: a["labelling"] for a in hook.iter_annotations(workspace.dataset, workspace.source_id)
    }
    assert labelled == {r["comment"]["id"]: r["labelling"] for r in records}


@pytest.fixture(scope="module")
def loaded_dataset(emulator, tmp_path_factory) -> Any:
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    workspace = new_workspace(hook)
    records = [{"comment": r["comment"]} for r in read_jsonl(BANKING77_JSONL)[:LOADED]]
    path = write_jsonl(tmp_path_factory.mktemp("loaded") / "comments.jsonl", records)
    CommunicationsMiningUploadCommentsOperator(
        task_id="seed", source=workspace.source, dataset=workspace.dataset, input_path=str(path)
    ).execute({})
    workspace.ids = {r["comment"]["id"] for r in records}
    return workspace


@pytest.mark.parametrize("kill_at", [1, 60])
def test_export_killed_leaves_no_partial_file_and_rerun_is_complete(kill_at, emulator, loaded_dataset, tmp_path):
    target = tmp_path / "out" / "export.jsonl"
    kwargs = {
        "dataset": loaded_dataset.dataset,
        "output_path": str(target),
        "start": "2026-10-01",
        "end": "2026-11-01",
        "page_size": EXPORT_PAGE,
    }
    module, cls = "datasets", "CommunicationsMiningExportDatasetOperator"
    assert run_operator(module, cls, kwargs, (emulator, EXPORT, kill_at)) is None
    assert not target.exists()  # killed mid-export: no file, not a partial one
    result = run_operator(module, cls, kwargs)
    assert result is not None and result["count"] == LOADED
    ids = [line["comment"]["id"] for line in read_jsonl(target)]
    assert len(ids) == len(set(ids)) == LOADED


@pytest.mark.parametrize("kill_at", [1, 40])
def test_stream_fetch_killed_redelivers_and_loses_nothing(kill_at, emulator, hook, loaded_dataset, tmp_path):
    stream = f"crash{kill_at}"
    hook.put_stream(loaded_dataset.dataset, stream)
    hook.reset_stream(loaded_dataset.dataset, stream, "2000-01-01T00:00:00Z")
    target = tmp_path / "stream.jsonl"
    kwargs = {
        "dataset": loaded_dataset.dataset,
        "stream": stream,
        "output_path": str(target),
        "batch_size": STREAM_BATCH,
        "advance": True,
        "max_results": 100_000,
    }
    module, cls = "streams", "CommunicationsMiningStreamFetchOperator"
    assert run_operator(module, cls, kwargs, (emulator, ADVANCE, kill_at)) is None
    assert not target.exists()  # the final file appears only once the drain is done
    spool = (tmp_path / ".stream.jsonl.drain").read_bytes()
    assert spool.count(b"\n") >= STREAM_BATCH * kill_at  # every acknowledged batch is on disk for the retry
    run_operator(module, cls, kwargs)
    ids = [line["comment"]["id"] for line in read_jsonl(target)]
    assert set(ids) == loaded_dataset.ids  # nothing lost
    assert len(ids) - len(set(ids)) <= STREAM_BATCH  # at most the batch in flight at the kill comes twice


@pytest.mark.parametrize("operator_kind", ["upload", "export"])
def test_emulator_restart_in_the_middle_is_survived(operator_kind, tmp_path, context):
    """The API process is stopped mid-run and started again on the same port and state file."""
    import threading

    import requests

    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook
    from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator
    from tests.conftest import TOKEN, free_port, start_emulator_process

    state, port = str(tmp_path / "state.json"), free_port()
    url = f"http://127.0.0.1:{port}"
    extra = {"retry_initial_wait": 0.2, "retry_max_wait": 1, "retry_max_attempts": 60, "retry_max_elapsed": 120}
    os.environ["AIRFLOW_CONN_CM_RESTART"] = json.dumps(
        {"conn_type": "communications_mining", "host": url, "password": TOKEN, "extra": extra}
    )

    def stats() -> dict[str, Any]:
        response = requests.get(f"{url}/_emulator/stats", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        return response.json()["stats"]

    process = start_emulator_process(port, state=state)
    records = read_jsonl(BANKING77_JSONL)[:UPLOADED]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    try:
        hook = CommunicationsMiningHook("cm_restart")
        workspace = new_workspace(hook)
        upload = CommunicationsMiningUploadCommentsOperator(
            task_id="upload", source=workspace.source, dataset=workspace.dataset, input_path=str(path),
            batch_size=UPLOADED // 32, communications_mining_conn_id="cm_restart",
        )  # fmt: skip
        export = CommunicationsMiningExportDatasetOperator(
            task_id="export", dataset=workspace.dataset, output_path=str(tmp_path / "out.jsonl"),
            start="2026-10-01", end="2026-11-01", page_size=4, communications_mining_conn_id="cm_restart",
        )  # fmt: skip
        if operator_kind == "export":
            upload.execute(context)
        route, threshold = (SYNC, 5) if operator_kind == "upload" else (EXPORT, 50)
        start = stats()["requests_by_route"].get(route, 0)
        outcome: dict[str, Any] = {}
        operator = upload if operator_kind == "upload" else export
        worker = threading.Thread(target=lambda: outcome.update(result=operator.execute(context)))
        worker.start()
        while stats()["requests_by_route"].get(route, 0) - start < threshold:
            assert worker.is_alive(), "the operator finished before the restart"
            time.sleep(0.01)
        process.terminate()
        process.wait(timeout=30)
        time.sleep(1.0)  # the API is down: requests are refused and retried
        process = start_emulator_process(port, state=state)
        worker.join(timeout=300)
        result = outcome["result"]
        delivered = [c["comment"]["id"] for c in CommunicationsMiningHook("cm_restart").iter_export(workspace.dataset)]
        assert sorted(delivered) == sorted(r["comment"]["id"] for r in records)
        assert stats()["billed_comments"] == len(records)  # kept by the state file, nothing billed twice
        if operator_kind == "upload":
            assert result["labelled"] == len(records) and result["rejected"] == 0
        else:
            ids = [line["comment"]["id"] for line in read_jsonl(result["path"])]
            assert len(ids) == len(set(ids)) == len(records)
    finally:
        process.terminate()
        process.wait(timeout=30)
