"""A real Airflow deployment for the example DAGs, driven only through Airflow's REST API.

``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` run as separate
processes with the LocalExecutor on a fresh PostgreSQL metadata database (127.0.0.1:5432, created
here with a unique name and dropped at the end), and the emulator is the Communications Mining
API. The example DAGs are parsed from ``example_dags/`` with the settings they read from the
environment.

These tests are collected only when asked for (``-m deployment``, or a path inside this folder),
so ``pytest`` with no arguments keeps running the in-process suite. The parent ``tests/conftest.py``
points ``AIRFLOW_HOME`` of this process at a temporary folder; the deployment's processes get
their own environment, built explicitly from scratch (:meth:`Deployment.environment`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.selection import collected_only_when_selected

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
BANKING77_JSONL = (ROOT / ".." / "shared" / "data" / "banking77" / "comments.jsonl").resolve()
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
STREAM = "new-messages"
#: The stream and table of ``cm_stream_events``: its own, so that it never takes another case's batches.
EVENTS_STREAM, EVENTS_TABLE = "events", "cm_stream_events"
#: Its batch size and poll interval: small batches, frequent polls, so that several runs take seconds.
EVENTS_BATCH_SIZE, EVENTS_POLL_INTERVAL = 4, 2
#: The stream and table of ``cm_stream_queue_events`` (``MessageQueueTrigger``), with the same batch size and polls.
QUEUE_STREAM, QUEUE_TABLE = "queue-events", "cm_stream_queue_events"
#: Seconds a process gets to stop after SIGTERM before it is killed.
GRACE = 15.0


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect the deployment tests only when they are asked for, never in a plain ``pytest`` run."""
    return collected_only_when_selected(config, HERE, "deployment")


#: Checks what the whole session wrote, so it runs after every other case.
RUNS_LAST = "test_no_log_of_the_deployment_holds_the_api_token"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.name == RUNS_LAST)  # stable: everything else keeps its order


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last seen: {last!r})")


def stop_processes(processes: list[subprocess.Popen[bytes]], grace: float = GRACE) -> None:
    """SIGTERM each process group (led by the pid we started, so its workers too), all at once;
    SIGKILL what is left after ``grace`` seconds."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for process in processes:
        # The leader may be gone while children it forked linger in its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"({exc})"
    return "\n".join(line[:500] for line in text[-lines:])


class Postgres:
    """Databases on the PostgreSQL server, created and dropped by name."""

    @staticmethod
    def connect(database: str = "postgres") -> Any:
        import psycopg2

        connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database, connect_timeout=5)
        connection.autocommit = True
        return connection

    @classmethod
    def available(cls) -> bool:
        try:
            cls.connect().close()
        except Exception:
            return False
        return True

    @classmethod
    def execute(cls, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        connection = cls.connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    @classmethod
    def create(cls, name: str) -> None:
        cls.execute(f'CREATE DATABASE "{name}"')

    @classmethod
    def drop(cls, name: str) -> None:
        cls.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Deployment:
    """The processes, databases and folders of one deployment; :meth:`close` undoes all of it."""

    def __init__(self) -> None:
        self.name = "cm_deploy_" + uuid.uuid4().hex[:12]
        self.folder = Path(tempfile.mkdtemp(prefix="cm-deployment-"))
        self.logs = self.folder / "logs"
        self.logs.mkdir()
        self.home = self.folder / "airflow-home"
        self.exports = self.folder / "exports"
        self.token = "cm-deploy-" + secrets.token_hex(16)
        self.emulator_port = free_port()
        self.emulator_url = f"http://127.0.0.1:{self.emulator_port}"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.worker_log_port = free_port()
        self.trigger_log_port = free_port()
        self.dataset = f"p{uuid.uuid4().hex[:10]}/support"
        self.source = self.dataset.split("/")[0] + "/inbox"
        self.warehouse_db = self.name + "_wh"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.databases: list[str] = []
        self.jwt_secret = secrets.token_hex(32)
        self.model_version = 0
        self.started_in = 0.0
        self._airflow_token: str | None = None

    # -- environment -------------------------------------------------------------------------------

    def connection_json(self, token: str | None = None) -> str:
        host = f"{self.emulator_url}/acme/production/reinfer_"
        return json.dumps({"conn_type": "communications_mining", "host": host, "password": token or self.token})

    def environment(self) -> dict[str, str]:
        """Everything the Airflow processes see: nothing inherited from this process's Airflow settings."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["AIRFLOW_HOME"] = str(self.home)
        airflow = {
            "CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "CORE__LOAD_EXAMPLES": "False",
            "CORE__EXECUTOR": "LocalExecutor",
            "CORE__PARALLELISM": "4",
            "CORE__FERNET_KEY": "",
            "CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # The connection Test (REST API and CLI); off by default in Airflow 3.
            "CORE__TEST_CONNECTION": "Enabled",
            "DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.name}",
            "API__BASE_URL": self.api_url,
            "API__WORKERS": "1",
            "API_AUTH__JWT_SECRET": self.jwt_secret,
            "API_AUTH__JWT_ISSUER": self.name,
            "LOGGING__LOGGING_LEVEL": "INFO",
            # The log servers of the scheduler's workers and of the triggerer: never the default ports.
            "LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
            "LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
            # A 2-core machine: short loops so that a run takes seconds, not minutes.
            "SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "SCHEDULER__USE_JOB_SCHEDULE": "True",
            "TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
        }
        env.update({f"AIRFLOW__{key}": value for key, value in airflow.items()})
        env.update(
            {
                "AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT": self.connection_json(),
                "AIRFLOW_CONN_CM_WAREHOUSE": f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.warehouse_db}",
                "CM_SOURCE": self.source,
                "CM_DATASET": self.dataset,
                "CM_EXPECTED_VERSION": str(self.model_version),
                "CM_STREAM": STREAM,
                "CM_EXPORT_ROOT": str(self.exports),
                "CM_WAREHOUSE_CONN_ID": "cm_warehouse",
                "CM_WAREHOUSE_PREFIX": "cm_",
                # Each night loads exactly its day (the example's default re-reads the 7 days before too).
                "CM_LOOKBACK_DAYS": "0",
                "CM_STREAM_TABLE": "cm_stream_results",
                "CM_SENSOR_TIMEOUT": "900",
                "CM_EVENTS_STREAM": EVENTS_STREAM,
                "CM_EVENTS_TABLE": EVENTS_TABLE,
                "CM_EVENTS_BATCH_SIZE": str(EVENTS_BATCH_SIZE),
                "CM_EVENTS_POLL_INTERVAL": str(EVENTS_POLL_INTERVAL),
                "CM_EVENTS_REDELIVERY_TIMEOUT": "900",
                "CM_QUEUE_STREAM": QUEUE_STREAM,
                "CM_QUEUE_TABLE": QUEUE_TABLE,
                "PYTHONUNBUFFERED": "1",
                # The provider and the emulator from this tree, whatever the virtualenv has installed.
                "PYTHONPATH": str(ROOT),
            }
        )
        return env

    # -- processes ---------------------------------------------------------------------------------

    def start(
        self, name: str, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start one process in its own process group (in ``cwd``, default the deployment's folder), its
        output in ``logs/<name>.log``."""
        with open(self.logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env if env is not None else self.environment(),
                cwd=cwd or self.folder,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            stop_processes([process])

    def start_emulator(self, token: str | None = None) -> None:
        args = [str(BIN / "python"), "-m", "airflow_provider_cm.emulator", "--port", str(self.emulator_port)]
        args += ["--token", token or self.token, "--state", str(self.folder / "emulator-state.json")]
        process = self.start("emulator", args)

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the emulator exited with {process.returncode}:\n{tail(self.logs / 'emulator.log')}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.emulator_port), 0.5):
                return True
            return False

        wait_for("the emulator to listen", listening, timeout=60, interval=0.2)

    def migrate(self) -> None:
        self.home.mkdir()
        for database in (self.name, self.warehouse_db):
            Postgres.create(database)
            self.databases.append(database)
        with open(self.logs / "db-migrate.log", "wb") as log:
            subprocess.run(
                [str(BIN / "airflow"), "db", "migrate"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.folder,
                timeout=300,
                check=True,
            )

    def start_airflow(self) -> None:
        for component in COMPONENTS:
            args = [str(BIN / "airflow"), component]
            if component == "api-server":
                args += ["--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"]
            self.start(component, args)
        wait_for("the API server", self._api_up, timeout=180)

    def _api_up(self) -> bool:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail(self.logs / f'{name}.log')}")
        try:
            return requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def close(self) -> None:
        """Stop every process by its pid (group), then drop the databases. Safe to call twice."""
        processes = list(self.processes.values())
        self.processes.clear()
        stop_processes(processes)
        for database in self.databases:
            with contextlib.suppress(Exception):
                Postgres.drop(database)
        self.databases.clear()

    def log_tails(self, lines: int = 40) -> str:
        return "\n\n".join(
            f"----- {path.name} (last {lines} lines) -----\n{tail(path, lines)}" for path in sorted(self.logs.glob("*"))
        )

    # -- Airflow's REST API ------------------------------------------------------------------------

    def api(self, method: str, route: str, body: Any = None, expect: int | tuple[int, ...] = (200, 201)) -> Any:
        if self._airflow_token is None:
            # With [core] simple_auth_manager_all_admins every login is an admin's; the body is required.
            login = {"username": "admin", "password": "admin"}
            response = requests.post(f"{self.api_url}/auth/token", json=login, timeout=30)
            assert response.status_code in (200, 201), response.text
            self._airflow_token = response.json()["access_token"]
        response = requests.request(
            method,
            f"{self.api_url}/api/v2/{route}",
            json=body,
            headers={"Authorization": f"Bearer {self._airflow_token}"},
            timeout=60,
        )
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, f"{method} /api/v2/{route}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        def parsed() -> bool:
            return self.api("GET", f"dags/{dag_id}", expect=(200, 404)).get("dag_id") == dag_id

        wait_for(f"DAG {dag_id} to be parsed", parsed, timeout=timeout, interval=2)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        assert self.api("PATCH", f"dags/{dag_id}", {"is_paused": paused})["is_paused"] is paused

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        route = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
        content = self.api("GET", route).get("content")
        if isinstance(content, list):
            return "\n".join(json.dumps(item) if isinstance(item, dict) else str(item) for item in content)
        return str(content)

    def wait_for_task(self, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float) -> dict:
        def reached() -> dict[str, Any] | None:
            instance = self.task_instance(dag_id, run_id, task_id)
            return instance if instance["state"] in states else None

        return wait_for(f"{dag_id}/{run_id}/{task_id} in {sorted(states)}", reached, timeout=timeout)

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """A manual run of an unpaused ``dag_id`` with ``conf`` (``POST .../dagRuns``); returns its run id."""
        if self.api("GET", f"dags/{dag_id}")["is_paused"]:
            self.set_paused(dag_id, False)
        return self.api("POST", f"dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        return wait_for(f"run {dag_id}/{run_id} to finish", finished, timeout=timeout, interval=2)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        instances = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {instance["task_id"]: instance["state"] for instance in instances}

    def run_ids(self, dag_id: str, **filters: str) -> dict[str, dict[str, Any]]:
        query = "&".join(f"{key}={value}" for key, value in {"limit": "100", **filters}.items())
        runs = self.api("GET", f"dags/{dag_id}/dagRuns?{query}")["dag_runs"]
        return {run["dag_run_id"]: run for run in runs}

    def start_run(self, dag_id: str) -> str:
        """A new run of ``dag_id``: the one the scheduler creates when the DAG is first unpaused, or a
        manual one (``POST .../dagRuns``) once it runs on its schedule. Returns its run id."""
        known = set(self.run_ids(dag_id))
        if self.api("GET", f"dags/{dag_id}")["is_paused"]:
            self.set_paused(dag_id, False)
            with contextlib.suppress(AssertionError):
                return wait_for(f"a scheduled run of {dag_id}", lambda: set(self.run_ids(dag_id)) - known, 60).pop()
        return self.api("POST", f"dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]

    def fail_unfinished_runs(self, dag_id: str) -> None:
        """Mark runs left queued or running (by a failed case) failed, so that the next case starts clean."""
        for run_id, run in self.run_ids(dag_id).items():
            if run["state"] in ("queued", "running"):
                self.api("PATCH", f"dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")["value"]

    def emulator_requests(self, route_suffix: str) -> int:
        """Requests the emulator answered on routes ending with ``route_suffix`` (e.g. ``/fetch``)."""
        response = requests.get(
            f"{self.emulator_url}/_emulator/stats", headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        response.raise_for_status()
        counts = response.json()["stats"]["requests_by_route"]
        return sum(count for route, count in counts.items() if route.endswith(route_suffix))

    def tag_new_live_model(self) -> int:
        """Train and pin a new model version on the dataset's labels, tag it ``live``; return its version."""
        response = requests.post(
            f"{self.emulator_url}/_emulator/datasets/{self.dataset}/models",
            json={"tag": "live"},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )
        response.raise_for_status()
        return int(response.json()["version"])

    def default_pool(self) -> dict[str, Any]:
        pools = self.api("GET", "pools")["pools"]
        return next(pool for pool in pools if pool["name"] == "default_pool")


_LIVE: list[Deployment] = []


@atexit.register
def _close_leftovers() -> None:
    """A backstop for an interpreter that exits without running the fixture's teardown."""
    for deployment in _LIVE:
        deployment.close()


def _seed(deployment: Deployment) -> None:
    """A project, a source, a dataset over it, a pinned model (trained on labelled comments) tagged live."""
    os.environ["AIRFLOW_CONN_CM_DEPLOYMENT_API"] = deployment.connection_json()
    api = deployment_hook()
    project = deployment.dataset.split("/")[0]
    api.create_project(project)
    source_id = api.create_source(deployment.source, title="Inbox")["id"]
    api.create_dataset(deployment.dataset, source_ids=[source_id], title="Support")
    from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator

    labelled = deployment.folder / "labelled.jsonl"
    records = [r for r in read_banking77() if r["comment"]["timestamp"].startswith("2026-10-28")][:200]
    labelled.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    CommunicationsMiningUploadCommentsOperator(
        task_id="seed",
        communications_mining_conn_id="cm_deployment_api",
        source=deployment.source,
        dataset=deployment.dataset,
        input_path=str(labelled),
    ).execute({})
    deployment.model_version = deployment.tag_new_live_model()
    api.close()


def deployment_hook() -> Any:
    """A hook on the deployment's emulator, for the test process itself (setting up and checking)."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    return CommunicationsMiningHook("cm_deployment_api")


def upload_comments(deployment: Deployment, comments: list[dict[str, Any]], batch: int = 500) -> None:
    """Store ``comments`` in the deployment's source straight through the API, ``batch`` per ``sync``."""
    hook = deployment_hook()
    try:
        for start in range(0, len(comments), batch):
            hook.sync_comments(deployment.source, comments[start : start + batch])
    finally:
        hook.close()


_BANKING77: list[dict[str, Any]] = []


def read_banking77() -> list[dict[str, Any]]:
    """The BANKING77 corpus (read in place from the shared data folder, once per session)."""
    if not _BANKING77:
        with open(BANKING77_JSONL, encoding="utf-8") as handle:
            _BANKING77.extend(json.loads(line) for line in handle if line.strip())
    return _BANKING77


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def require_services() -> None:
    """Skip (or, with ``CM_REQUIRE_POSTGRES=1`` as in CI, fail) without PostgreSQL; fail without the data."""
    if not Postgres.available():
        if os.environ.get("CM_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}")
        pytest.skip(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}")
    if not BANKING77_JSONL.exists():
        pytest.fail(f"{BANKING77_JSONL} is missing")


@contextlib.contextmanager
def for_the_session(
    deployment: Deployment, name: str, request: pytest.FixtureRequest, report: Callable[[str], None]
) -> Iterator[None]:
    """Run ``deployment`` for the test session and take it down on success, failure, Ctrl-C or SIGTERM.

    Its folder (component logs, task logs, exports) is removed after a green session and kept,
    with its path printed, after a failure (or always with ``CM_DEPLOYMENT_KEEP=1``).
    """
    failed_before = request.session.testsfailed
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)  # a CI time-out still stops everything
    _LIVE.append(deployment)
    try:
        yield
    except BaseException:
        sys.stderr.write(f"\nThe {name} failed; its logs:\n{deployment.log_tails()}\n")
        raise
    finally:
        stopping = time.monotonic()
        deployment.close()
        _LIVE.remove(deployment)
        signal.signal(signal.SIGTERM, previous_handler)
        report(f"{name}: stopped in {time.monotonic() - stopping:.0f} s")
        if request.session.testsfailed == failed_before and not os.environ.get("CM_DEPLOYMENT_KEEP"):
            shutil.rmtree(deployment.folder, ignore_errors=True)
        else:
            report(f"{name}: logs, task logs and exports kept in {deployment.folder}")


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest, report: Callable[[str], None]) -> Iterator[Deployment]:
    """The deployment, started once for the session (see :func:`for_the_session`)."""
    require_services()
    deployment = Deployment()
    with for_the_session(deployment, "deployment", request, report):
        started = time.monotonic()
        deployment.start_emulator()
        _seed(deployment)
        deployment.migrate()
        deployment.start_airflow()
        for dag_id in ("cm_stream_to_warehouse", "cm_nightly_export"):
            deployment.wait_for_dag(dag_id)
        deployment.started_in = time.monotonic() - started
        report(
            f"deployment: database migrated, four components up and the DAGs parsed in {deployment.started_in:.0f} s"
        )
        yield deployment


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed case carries the tail of every component's log in its report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _LIVE:
        report.sections.append(("deployment logs", f"(folder {_LIVE[-1].logs})\n{_LIVE[-1].log_tails()}"))
