"""Several workers that share no disk: the example DAGs on CeleryExecutor, as most users run them.

The deployment of the deployment tier (:class:`tests.deployment.conftest.Deployment`: api-server,
scheduler, dag-processor and triggerer on a fresh PostgreSQL metadata database, the emulator as
the API), with the CeleryExecutor instead of the LocalExecutor:

* the broker is the Redis server on 127.0.0.1:6379, in a database number of its own (claimed
  here, flushed at the end); the result backend is the PostgreSQL metadata database;
* two ``airflow celery worker`` processes, ``worker-a`` and ``worker-b``, each with its own
  working directory, ``HOME``, ``TMPDIR`` and ``AIRFLOW_HOME`` (so no local file of one is seen
  by the other) and its own name on the task instances (``[core] hostname_callable``);
* object storage is S3 on moto's standalone server (started and stopped here on 127.0.0.1),
  reached through the amazon provider's ``aws_default`` connection, which the hand-off URIs
  name (``s3://aws_default@bucket/...``); task logs go there too (remote logging), so the REST
  API serves the log of a task that ran on either worker, as in a deployment without shared disk;
* the warehouse is a PostgreSQL database (``cm_warehouse``); ``cm_sqlite`` is a SQLite file.

Collected only when asked for (``-m workers``, or a path inside this folder): ``make test-workers``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.deployment.conftest import (
    BIN,
    PG_HOST,
    PG_PORT,
    PG_USER,
    Deployment,
    _seed,
    for_the_session,
    free_port,
    require_services,
    tail,
    wait_for,
)
from tests.selection import collected_only_when_selected

HERE = Path(__file__).resolve().parent
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
WORKERS = ("worker-a", "worker-b")
BUCKET = "cm-workers"
#: The tier's modules in the order they run: the example DAGs, then the killed workers, then the backfill.
ORDER = ("test_example_dags", "test_worker_loss", "test_backfill")
#: Seconds without a heartbeat after which the scheduler fails a task whose worker died (default 300).
HEARTBEAT_TIMEOUT = 20
#: The SQLite warehouse of connection ``cm_sqlite``: a relative path, so in each worker's own folder.
SQLITE_FILE = "warehouse.db"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect this tier only when it is asked for, never in a plain ``pytest`` run."""
    return collected_only_when_selected(config, HERE, "workers")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        return ORDER.index(module) if module in ORDER else len(ORDER)

    items.sort(key=rank)  # stable: the cases of a module keep their order


def claim_redis_database() -> int:
    """A Redis database number that holds nothing, claimed with a key so that no other run takes it."""
    import redis

    for number in range(1, 16):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number, socket_timeout=5)
        try:
            if client.dbsize() == 0 and client.set("cm-workers-tier", str(os.getpid()), nx=True, ex=6 * 3600):
                return number
        finally:
            client.close()
    raise RuntimeError(f"no empty Redis database on {REDIS_HOST}:{REDIS_PORT} (1-15 all hold keys)")


def flush_redis_database(number: int) -> None:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def readable(line: str) -> str:
    """A task log line as a person reads it: level, event and any error, not the whole JSON record."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    errors = "; ".join(f"{e.get('exc_type')}: {e.get('exc_value')}" for e in record.get("error_detail") or [])
    return f"{record.get('level', '')} {record.get('event', '')} {errors}".strip()


class CeleryDeployment(Deployment):
    """The deployment with the CeleryExecutor, two workers, S3 on moto and remote task logs."""

    def __init__(self) -> None:
        super().__init__()
        self.redis_db = claim_redis_database()
        self.s3_port = free_port()
        self.s3_url = f"http://127.0.0.1:{self.s3_port}"
        self.s3_root = f"s3://aws_default@{BUCKET}"
        self.worker_ports = {name: free_port() for name in WORKERS}

    @property
    def broker_url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}"

    def aws_connection_json(self) -> str:
        extra = {"endpoint_url": self.s3_url, "region_name": "us-east-1"}
        return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})

    def environment(self) -> dict[str, str]:
        env = super().environment()
        airflow = {
            "CORE__EXECUTOR": "CeleryExecutor",
            "CORE__PARALLELISM": "8",
            "CORE__HOSTNAME_CALLABLE": "tests.workers.hostname.worker_name",
            "CELERY__BROKER_URL": self.broker_url,
            "CELERY__RESULT_BACKEND": f"db+postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.name}",
            "CELERY__WORKER_CONCURRENCY": "2",
            "CELERY__SYNC_PARALLELISM": "1",
            "SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "LOGGING__REMOTE_LOGGING": "True",
            "LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{BUCKET}/logs",
            "LOGGING__REMOTE_LOG_CONN_ID": "aws_default",
        }
        env.update({f"AIRFLOW__{key}": value for key, value in airflow.items()})
        env.update(
            {
                "AIRFLOW_CONN_AWS_DEFAULT": self.aws_connection_json(),
                # A file in the working directory of the worker that runs the load: each worker its own.
                "AIRFLOW_CONN_CM_SQLITE": json.dumps({"conn_type": "sqlite", "host": SQLITE_FILE}),
                # Every hand-off through S3; the drain's local case passes a local drain_root.
                "CM_EXPORT_ROOT": f"{self.s3_root}/exports",
                "CM_DRAIN_BATCH_SIZE": "50",
                # One scheduled drain a day, at midnight: the cases' manual runs are the only others.
                "CM_DRAIN_INTERVAL_MINUTES": "1440",
            }
        )
        return env

    def worker_environment(self, name: str) -> dict[str, str]:
        """A worker's environment: its own home, temporary folder, Airflow home, name and log server port."""
        root = self.folder / name
        env = self.environment()
        for key, folder in (("HOME", "home"), ("TMPDIR", "tmp"), ("AIRFLOW_HOME", "airflow-home")):
            (root / folder).mkdir(parents=True, exist_ok=True)
            env[key] = str(root / folder)
        env["CM_WORKER_NAME"] = name
        env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(self.worker_ports[name])
        return env

    # -- S3 ------------------------------------------------------------------------------------------

    def start_s3(self) -> None:
        args = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.s3_port)]
        process = self.start("s3", args)

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}:\n{tail(self.logs / 's3.log')}")
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{self.s3_url}/moto-api/", timeout=2).status_code < 500
            return False

        wait_for("moto's S3 server", listening, timeout=60, interval=0.3)
        self.s3().create_bucket(Bucket=BUCKET)

    def s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def s3_keys(self, prefix: str) -> list[str]:
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def s3_text(self, key: str) -> str:
        return self.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read().decode("utf-8")

    # -- runs ----------------------------------------------------------------------------------------

    def emulator_stats(self) -> dict[str, Any]:
        response = requests.get(
            f"{self.emulator_url}/_emulator/stats", headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        response.raise_for_status()
        return response.json()["stats"]

    def emulator_faults(self, body: dict[str, Any] | None) -> None:
        """Set emulator faults (``{"latency": 0.2}``...), or clear them all with ``None``."""
        url = f"{self.emulator_url}/_emulator/faults"
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is None:
            requests.delete(url, headers=headers, timeout=30).raise_for_status()
        else:
            requests.post(url, json=body, headers=headers, timeout=30).raise_for_status()

    def hosts(self, dag_id: str, run_id: str) -> dict[str, str]:
        """The worker each task of a run ran on (its latest try), by task id."""
        instances = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {instance["task_id"]: instance["hostname"] for instance in instances}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The log of a finished try, once its worker has uploaded it to S3 (just after the try ends)."""
        read = super().task_log

        def uploaded() -> str | None:
            log = read(dag_id, run_id, task_id, try_number)
            return log if f"s3://{BUCKET}/logs/" in log and "::endgroup::" in log.split("s3://", 1)[1] else None

        return wait_for(f"the log of {dag_id}/{run_id}/{task_id} try {try_number} in S3", uploaded, timeout=60)

    def settle(self, dag_id: str) -> None:
        """Unpause ``dag_id`` and let the run its schedule starts then (if any) finish, so that a case's
        manual run is the only one."""
        if self.api("GET", f"dags/{dag_id}")["is_paused"]:
            self.set_paused(dag_id, False)
            with contextlib.suppress(AssertionError):
                wait_for(f"a scheduled run of {dag_id}", lambda: self.run_ids(dag_id), timeout=20)
        for run_id in self.run_ids(dag_id):
            self.wait_for_run(dag_id, run_id, timeout=300)

    def failures(self, dag_id: str, run_id: str, lines: int = 40) -> str:
        """The states of a run's tasks and the end of each failed try's log (read from S3 through the API)."""
        instances = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        text = [f"{dag_id}/{run_id}: " + ", ".join(f"{i['task_id']}={i['state']}" for i in instances)]
        for instance in instances:
            if instance["state"] in ("success", "skipped"):
                continue
            for number in range(1, (instance["try_number"] or 0) + 1):
                with contextlib.suppress(AssertionError, requests.RequestException):
                    log = [
                        readable(line)
                        for line in self.task_log(dag_id, run_id, instance["task_id"], number).splitlines()
                    ]
                    text.append(f"--- {instance['task_id']} try {number} ---\n" + "\n".join(log[-lines:]))
        return "\n".join(text)

    def task_try(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> dict[str, Any]:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries/{try_number}")

    def backfill(
        self, dag_id: str, first_day: str, last_day: str, conf: dict[str, Any] | None = None, timeout: float = 600
    ) -> dict[str, Any]:
        """Backfill the runs whose data intervals start on ``first_day`` to ``last_day`` (``POST /backfills``,
        with ``conf``) and wait until it has completed. Unpausing first lets the latest scheduled run finish."""
        if self.api("GET", f"dags/{dag_id}")["is_paused"]:
            self.set_paused(dag_id, False)
            wait_for(f"the latest scheduled run of {dag_id}", lambda: self.run_ids(dag_id), timeout=60)
        for run_id in self.run_ids(dag_id):
            self.wait_for_run(dag_id, run_id, timeout=180)
        body = {
            "dag_id": dag_id,
            "from_date": f"{first_day}T00:00:00Z",
            "to_date": f"{last_day}T00:00:00Z",
            "reprocess_behavior": "none",
            "dag_run_conf": conf or {},
        }
        created = self.api("POST", "backfills", body)

        def completed() -> dict[str, Any] | None:
            state = self.api("GET", f"backfills/{created['id']}")
            return state if state["completed_at"] else None

        return wait_for(f"backfill {created['id']} of {dag_id} to complete", completed, timeout=timeout, interval=2)

    # -- workers -------------------------------------------------------------------------------------

    def start_worker(self, name: str) -> None:
        """Start ``name`` consuming the default queue and its own (``name``)."""
        args = [str(BIN / "airflow"), "celery", "worker", "--celery-hostname", f"{name}@%h"]
        args += ["--queues", f"default,{name}", "--concurrency", "2"]
        self.start(name, args, env=self.worker_environment(name), cwd=self.folder / name)
        wait_for(f"{name} to join", lambda: self.celery_worker(name), timeout=120, interval=1)

    def celery_app(self) -> Any:
        from celery import Celery

        return Celery(broker=self.broker_url)

    def celery_worker(self, name: str) -> str | None:
        """The Celery node name of worker ``name`` when it answers a ping, else None."""
        app = self.celery_app()
        try:
            replies = app.control.ping(timeout=1.0) or []
        finally:
            app.close()
        return next((node for reply in replies for node in reply if node.startswith(f"{name}@")), None)

    def set_consuming_default(self, name: str, consuming: bool) -> None:
        """Make worker ``name`` take tasks from the default queue, or stop taking them (its own queue stays)."""
        node = self.celery_worker(name)
        assert node, f"{name} does not answer"
        app = self.celery_app()
        try:
            if consuming:
                app.control.add_consumer("default", destination=[node], reply=True, timeout=5)
            else:
                app.control.cancel_consumer("default", destination=[node], reply=True, timeout=5)
        finally:
            app.close()

    def kill_worker(self, name: str) -> None:
        """SIGKILL worker ``name`` and every process it started (its task runners too): a lost machine."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def local_files(self, name: str) -> Path:
        """The folder where worker ``name`` keeps local files (its working directory)."""
        return self.folder / name

    def start_airflow(self) -> None:
        super().start_airflow()
        for name in WORKERS:
            self.start_worker(name)

    def close(self) -> None:
        super().close()
        with contextlib.suppress(Exception):
            flush_redis_database(self.redis_db)


@pytest.fixture(scope="session")
def workers(request: pytest.FixtureRequest, report: Callable[[str], None]) -> Iterator[CeleryDeployment]:
    """The Celery deployment, started once for the session (see :func:`~tests.deployment.conftest.for_the_session`)."""
    require_services()
    deployment = CeleryDeployment()
    with for_the_session(deployment, "workers", request, report):
        started = time.monotonic()
        deployment.start_s3()
        deployment.start_emulator()
        _seed(deployment)
        deployment.migrate()
        deployment.start_airflow()
        deployment.started_in = time.monotonic() - started
        report(
            f"workers: CeleryExecutor, two workers (Redis db {deployment.redis_db}), S3 on moto, "
            f"up in {deployment.started_in:.0f} s"
        )
        yield deployment


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed case carries the tail of every component's and worker's log in its report."""
    outcome = yield
    report = outcome.get_result()
    deployment = item.funcargs.get("workers") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(deployment, CeleryDeployment):
        report.sections.append(("deployment logs", f"(folder {deployment.logs})\n{deployment.log_tails()}"))
