"""Worker-local files and databases under an executor that spreads tasks over several workers: warned, explained."""

from __future__ import annotations

import logging
import uuid

import pytest

from airflow_provider_cm.common.workers import (
    executor_name,
    hostname,
    missing_input,
    spreads_over_workers,
    warn_if_worker_local,
    warn_if_worker_local_database,
)
from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from airflow_provider_cm.operators.streams import CommunicationsMiningStreamFetchOperator

CELERY = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"


@pytest.fixture
def celery(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", CELERY)


class Task:
    def __init__(self, executor: str | None = None) -> None:
        self.task_id = "t"
        self.executor = executor
        self.log = logging.getLogger("tests.workers")


def test_the_executor_is_the_tasks_own_else_the_configured_default(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    assert (executor_name(Task()), spreads_over_workers(Task())) == ("LocalExecutor", False)
    assert executor_name(Task("KubernetesExecutor")) == "KubernetesExecutor"
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", f"{CELERY},LocalExecutor")  # several: the first is the default
    assert (executor_name(Task()), spreads_over_workers(Task())) == ("CeleryExecutor", True)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "edge:airflow.providers.edge3.executors.EdgeExecutor")
    assert executor_name(Task()) == "EdgeExecutor"
    assert not spreads_over_workers(Task("LocalExecutor"))


def test_a_local_path_is_warned_about_once_per_role_and_an_object_store_never(celery, caplog):
    task = Task()
    with caplog.at_level(logging.WARNING, "tests.workers"):
        assert warn_if_worker_local(task, "/data/out.jsonl", "output_path")
        assert not warn_if_worker_local(task, "/data/out.jsonl", "output_path")
        assert warn_if_worker_local(task, "file:///data/rejected.jsonl", "dead-letter file")
        assert not warn_if_worker_local(task, "s3://bucket/out.jsonl", "input_path")
    assert len(caplog.records) == 2
    message = caplog.records[0].getMessage()
    assert "local output_path (/data/out.jsonl) under CeleryExecutor" in message
    assert "s3://" in message and "volume" in message


def test_nothing_is_said_under_a_single_machine_executor(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    with caplog.at_level(logging.WARNING, "tests.workers"):
        assert not warn_if_worker_local(Task(), "/data/out.jsonl", "output_path")
    assert "another worker" not in str(missing_input("/data/in.jsonl", "input_path", Task()))
    assert caplog.records == []


def test_a_sqlite_warehouse_is_warned_about_and_a_server_is_not(celery, caplog, tmp_path):
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    with caplog.at_level(logging.WARNING, "tests.workers"):
        assert warn_if_worker_local_database(Task(), SqliteHook(), "warehouse")
        assert not warn_if_worker_local_database(Task(), PostgresHook(), "warehouse")
    assert "each worker writes its own copy" in caplog.records[0].getMessage()


def test_the_worker_is_named_as_airflow_names_it_on_the_task_instance(monkeypatch):
    monkeypatch.delenv("AIRFLOW__CORE__HOSTNAME_CALLABLE", raising=False)
    assert hostname()  # Airflow's default [core] hostname_callable: the machine's fully qualified name
    monkeypatch.setenv("AIRFLOW__CORE__HOSTNAME_CALLABLE", "tests.workers.hostname.worker_name")
    monkeypatch.setenv("CM_WORKER_NAME", "worker-z")
    assert hostname() == "worker-z"
    assert "does not exist on this worker (worker-z)" in str(missing_input("/data/in.jsonl", "input_path"))


def test_a_missing_upload_input_says_it_may_be_on_another_worker(celery, workspace, tmp_path, context):
    missing = tmp_path / f"{uuid.uuid4().hex}.jsonl"
    upload = CommunicationsMiningUploadCommentsOperator(task_id="upload", source=workspace.source, input_path=missing)
    with pytest.raises(FileNotFoundError) as raised:
        upload.execute(context)
    message = str(raised.value)
    assert f"input_path {missing} does not exist on this worker ({hostname()})" in message
    assert "under CeleryExecutor the task that wrote it may have run on another worker" in message


def test_a_stream_fetch_to_a_local_path_warns_in_the_task_log(celery, workspace, hook, tmp_path, context, capfd):
    hook.put_stream(workspace.dataset, "s")
    fetch = CommunicationsMiningStreamFetchOperator(
        task_id="fetch", dataset=workspace.dataset, stream="s", output_path=str(tmp_path / "out.jsonl")
    )
    capfd.readouterr()
    fetch.execute(context)
    logged = capfd.readouterr()
    warnings = [line for line in (logged.out + logged.err).splitlines() if "share no local disk" in line]
    assert len(warnings) == 1 and "Task fetch uses a local output_path" in warnings[0], warnings
