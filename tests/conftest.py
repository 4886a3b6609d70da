"""Shared fixtures: an Airflow home with a real metadata database, the emulator as a real HTTP server.

Airflow reads its configuration at import, so the environment is set here before anything
imports it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()
BANKING77_JSONL = SHARED_DATA / "banking77" / "comments.jsonl"
BANKING77_CSV = SHARED_DATA / "banking77" / "comments.csv"
NLUPP_JSONL = SHARED_DATA / "nlupp-hotels" / "comments.jsonl"

#: The PostgreSQL server the warehouse tests load into, and their database on it.
POSTGRES_SERVER = os.environ.get("CM_TEST_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432")
POSTGRES_URI = f"{POSTGRES_SERVER}/cm_test"

#: The emulator's token in tests: long enough for Airflow's secrets masker (5+ characters).
TOKEN = "cm-test-token-" + uuid.uuid4().hex

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cm-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)


_REPORT: list[str] = []


@pytest.fixture(scope="session")
def report() -> Any:
    """Lines a test wants in the run's summary (measurements such as accuracy), printed at the end."""
    return _REPORT.append


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A pytest-xdist worker hands its measurements to the controller, which prints them."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["cm_report"] = list(_REPORT)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """The controller of a pytest-xdist run collects each worker's measurements (see above)."""
    _REPORT.extend(getattr(node, "workeroutput", {}).get("cm_report", []))


#: The test files that take longest, started first when pytest-xdist shares files among workers
#: (``make test`` runs ``-n 2 --dist loadfile --no-loadscope-reorder``), so that no long file starts last
#: on one worker while the other idles. Longest first, as measured with ``--durations``; the order only
#: changes the wall time.
FIRST_UNDER_XDIST = (
    "tests/integration/test_reliability.py",
    "tests/integration/test_crash_safety.py",
    "tests/integration/test_lineage.py",
    "tests/unit/emulator/test_schema.py",
    "tests/unit/operators/test_upload_labels.py",
    "tests/integration/test_pacing.py",
    "tests/integration/test_transfers.py",
    "tests/integration/test_oauth.py",
    "tests/integration/test_streams.py",
    "tests/unit/test_airflow_apis.py",
    "tests/integration/test_upload_counts.py",
    "tests/unit/test_example_dag_assets.py",
    "tests/integration/test_export_slices.py",
    "tests/integration/test_stream_events.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the longest files first (a stable sort: each file's own order is kept)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: index for index, name in enumerate(FIRST_UNDER_XDIST)}
    items.sort(key=lambda item: rank.get(Path(item.path).relative_to(ROOT).as_posix(), len(rank)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _REPORT:
        terminalreporter.section("measurements")
        for line in _REPORT:
            terminalreporter.write_line(line)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connection_json(host: str, token: str = TOKEN, **extra: Any) -> str:
    return json.dumps({"conn_type": "communications_mining", "host": host, "password": token, "extra": extra})


class Emulator:
    """The emulator process, with helpers to read its emulator-only routes."""

    def __init__(self, url: str, process: subprocess.Popen[bytes] | None) -> None:
        self.url = url
        self.process = process

    def admin(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        import requests

        response = requests.request(
            method, f"{self.url}/_emulator/{route}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self.admin("GET", "stats")["stats"]

    def billed(self) -> int:
        return self.stats()["billed_comments"]

    def requests_to(self, route: str) -> int:
        return self.stats()["requests_by_route"].get(route, 0)


def start_emulator_process(port: int, state: str | None = None, log_path: str | None = None) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "airflow_provider_cm.emulator", "--port", str(port), "--token", TOKEN]
    if state:
        args += ["--state", state]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the emulator exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the emulator did not start in 30 s")


@pytest.fixture(scope="session")
def emulator_log() -> str:
    return str(_AIRFLOW_HOME / "emulator.log")


@pytest.fixture(scope="session")
def emulator(emulator_log: str) -> Iterator[Emulator]:
    """One emulator process for the session (its own process, so it does not share the GIL with tests)."""
    port = free_port()
    process = start_emulator_process(port, log_path=emulator_log)
    url = f"http://127.0.0.1:{port}"
    os.environ["AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT"] = connection_json(f"{url}/acme/production/reinfer_")
    try:
        yield Emulator(url, process)
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A fresh SQLite metadata database in the session's AIRFLOW_HOME."""
    from airflow.utils.db import initdb

    initdb()


@pytest.fixture
def hook(emulator: Emulator):
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    yield hook
    hook.close()


class Workspace:
    """A project with one source and one dataset over it, named uniquely for one test."""

    def __init__(self, hook: Any, name: str) -> None:
        self.project = name
        hook.create_project(name)
        self.source = f"{name}/inbox"
        self.dataset = f"{name}/support"
        self.source_id = hook.create_source(self.source, title="Inbox")["id"]
        hook.create_dataset(self.dataset, source_ids=[self.source_id], title="Support")


def new_workspace(hook: Any) -> Workspace:
    return Workspace(hook, "p" + uuid.uuid4().hex[:10])


@pytest.fixture
def workspace(hook: Any) -> Workspace:
    return new_workspace(hook)


class FakeTaskInstance:
    """Stands in for the task instance in a context handed straight to ``execute()``."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


@pytest.fixture
def context() -> dict[str, Any]:
    return {"ti": FakeTaskInstance()}


def local_path(path: str | Path) -> Path:
    """A local file path from a path or a ``file://`` URI as the operators return them."""
    text = str(path)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(local_path(path), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def make_record(comment_id: str, timestamp: str, text: str = "hello", label: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "comment": {"id": comment_id, "timestamp": timestamp, "messages": [{"body": {"text": text}}]}
    }
    if label:
        record["labelling"] = [{"group": "default", "assigned": [{"name": label, "sentiment": "positive"}]}]
    return record


def postgres_test_database() -> Any:
    """A psycopg2 connection to the ``cm_test`` database (created if missing).

    Skips the test when PostgreSQL is not reachable, unless ``CM_REQUIRE_POSTGRES`` is set (as CI does).
    """
    import psycopg2
    import psycopg2.errors

    try:
        admin = psycopg2.connect(f"{POSTGRES_SERVER}/postgres", connect_timeout=5)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = 'cm_test'")
            if cursor.fetchone() is None:
                try:
                    cursor.execute("CREATE DATABASE cm_test")
                except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                    pass  # another pytest-xdist worker created it between the check and here
        admin.close()
        return psycopg2.connect(POSTGRES_URI, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CM_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URI}: {exc}")
