"""The DAGs run on demand, triggered through the REST API: set-up, upload (``conf``) and the model-tag gate."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cm.exceptions import CommunicationsMiningNotFoundError
from tests.deployment.conftest import STREAM, Deployment, deployment_hook, read_banking77

pytestmark = pytest.mark.deployment

#: Days no other case of the tier uploads.
UPLOAD_DAY = "2026-10-20"
PREDICT_DAY = "2026-10-22"


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return str(path)


def test_upload_dag_uploads_a_file_named_in_the_run_conf(deployment: Deployment):
    records = [r for r in read_banking77() if r["comment"]["timestamp"].startswith(UPLOAD_DAY)][:40]
    input_path = write_jsonl(deployment.folder / "upload.jsonl", records)

    run_id = deployment.trigger("cm_upload_comments", {"input_path": input_path})
    run = deployment.wait_for_run("cm_upload_comments", run_id, timeout=180)
    assert run["state"] == "success", deployment.task_states("cm_upload_comments", run_id)

    counts = deployment.xcom("cm_upload_comments", run_id, "upload_comments")
    assert (counts["read"], counts["new"], counts["rejected"], counts["annotated"]) == (40, 40, 0, 40), counts
    hook = deployment_hook()
    try:
        stored = [hook.get_comment(deployment.source, r["comment"]["id"]) for r in records]
    finally:
        hook.close()
    assert [c["id"] for c in stored] == [r["comment"]["id"] for r in records]


def test_model_gate_predicts_with_the_live_version_and_fails_when_the_tag_moved(deployment: Deployment):
    dag_id = "cm_model_tag_gate"
    messages = [
        {"comment": r["comment"]} for r in read_banking77() if r["comment"]["timestamp"].startswith(PREDICT_DAY)
    ]
    conf = {
        "input_path": write_jsonl(deployment.folder / "new-messages.jsonl", messages[:10]),
        "output_path": str(deployment.folder / "new-messages.predictions.jsonl"),
    }
    run_id = deployment.trigger(dag_id, conf)
    run = deployment.wait_for_run(dag_id, run_id, timeout=180)
    assert run["state"] == "success", deployment.task_states(dag_id, run_id)
    assert deployment.xcom(dag_id, run_id, "check_live_model") == deployment.model_version
    predicted = deployment.xcom(dag_id, run_id, "predict_new_messages")
    # The DAG templates the version from XCom, so it reaches the operator (and its XCom) as text.
    assert (predicted["count"], str(predicted["version"])) == (10, str(deployment.model_version)), predicted
    lines = Path(conf["output_path"]).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 10

    # A new model tagged live: the gate (CM_EXPECTED_VERSION) stops the next run before any prediction.
    assert deployment.tag_new_live_model() != deployment.model_version
    drifted = deployment.trigger(dag_id, conf)
    run = deployment.wait_for_run(dag_id, drifted, timeout=180)
    states = deployment.task_states(dag_id, drifted)
    assert (run["state"], states) == (
        "failed",
        {"check_live_model": "failed", "predict_new_messages": "upstream_failed"},
    )


def test_setup_dag_over_existing_objects_succeeds_and_keeps_them(deployment: Deployment):
    """``cm_setup`` run where the project, source, dataset and stream already exist (as on every rerun)."""
    dag_id = "cm_setup"
    hook = deployment_hook()
    try:
        with contextlib.suppress(CommunicationsMiningNotFoundError):
            hook.delete_stream(deployment.dataset, STREAM)  # the stream is the one object the run creates
        source_id = hook.get_source(deployment.source)["id"]

        run_id = deployment.trigger(dag_id, {})
        run = deployment.wait_for_run(dag_id, run_id, timeout=180)
        states = deployment.task_states(dag_id, run_id)
        assert (run["state"], set(states.values())) == ("success", {"success"}), states

        assert hook.get_source(deployment.source)["id"] == source_id  # kept, not replaced
        stream = hook.get_stream(deployment.dataset, STREAM)
        assert stream["name"] == STREAM
        assert hook.fetch_stream(deployment.dataset, STREAM, size=16)["results"] == []  # starts at creation
    finally:
        hook.close()
