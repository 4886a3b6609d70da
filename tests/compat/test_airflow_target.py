"""What must hold on every Airflow and Python the provider supports: the compatibility tier.

``make test-compat`` runs this file, with the version-sensitive test files, in one virtual
environment per target (``tests/compat/targets.py``). It is collected only when asked for (its
path on the command line, or ``-m compat``), so ``make test`` does not run it twice.

Each case drives the installed Airflow as a user would: the provider's modules import, the
``airflow`` command lists the connection type, the example DAGs run with ``airflow dags test``
against the emulator, and the triggers fire from an event loop as the triggerer runs them.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import pkgutil
import sqlite3
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import airflow_provider_cm
from airflow_provider_cm.common.compat import AIRFLOW_VERSION, HAS_ASSET_STATE_STORE
from tests.airflow_internals import dag_bag
from tests.conftest import BANKING77_JSONL, ROOT, make_record, new_workspace, read_jsonl

pytestmark = pytest.mark.compat

AIRFLOW = str(Path(sys.executable).parent / "airflow")
#: The day of BANKING77 the DAGs upload and export: a few hundred comments.
DAY = datetime(2026, 10, 5, tzinfo=timezone.utc)


def airflow(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run the ``airflow`` command of this environment; its output, or a failure showing it."""
    done = subprocess.run(
        [AIRFLOW, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"airflow {' '.join(args)} exited with {done.returncode}:\n{output[-6000:]}"
    return output


def test_the_target_is_what_the_tier_asked_for():
    """The environment holds the Airflow and Python the target names (a resolver cannot swap them silently)."""
    expected_airflow = os.environ.get("CM_COMPAT_AIRFLOW")
    expected_python = os.environ.get("CM_COMPAT_PYTHON")
    if expected_airflow is None or expected_python is None:
        pytest.skip("not run by the compatibility tier (make test-compat)")
    assert AIRFLOW_VERSION == expected_airflow
    assert "{}.{}".format(*sys.version_info[:2]) == expected_python


def test_every_module_imports():
    names = [
        module.name
        for module in pkgutil.walk_packages(airflow_provider_cm.__path__, prefix="airflow_provider_cm.")
        if not module.name.endswith("__main__")
    ]
    assert len(names) > 30
    failures = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
    assert failures == {}


def test_every_example_dag_parses(airflow_db):
    bag = dag_bag(str(ROOT / "example_dags"))
    assert bag.import_errors == {}  # but the example DAGs this Python cannot import by design (dag_bag says which)
    assert len(bag.dag_ids) >= 8, bag.dag_ids


def test_airflow_lists_the_connection_type_and_its_hook():
    output = airflow("providers", "hooks", "--output", "json")
    assert "Error when importing" not in output
    hooks = json.loads(output[output.index("[") :])
    ours = [hook for hook in hooks if hook.get("connection_type") == "communications_mining"]
    assert ours and ours[0]["class"] == "airflow_provider_cm.hooks.communications_mining.CommunicationsMiningHook"


def test_airflow_loads_the_extra_link_and_the_queue_scheme_from_the_provider_info():
    """``extra-links`` as ``airflow providers links`` lists them; ``queues`` as ``MessageQueueTrigger`` finds them."""
    output = airflow("providers", "links", "--output", "json")
    assert "Error when importing" not in output
    links = json.loads(output[output.index("[") :])
    assert {"extra_link_class_name": "airflow_provider_cm.common.links.CommunicationsMiningTenantLink"} in links

    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    from airflow_provider_cm.common.compat import has_message_queue_trigger
    from airflow_provider_cm.queues.communications_mining import SCHEME

    assert has_message_queue_trigger()
    trigger = MessageQueueTrigger(scheme=SCHEME, dataset="demo/support", stream="new-messages", poll_interval=5.0)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_cm.triggers.streams.CommunicationsMiningStreamEventTrigger"
    assert (kwargs["dataset"], kwargs["stream"], kwargs["poll_interval"]) == ("demo/support", "new-messages", 5.0)


def test_setup_upload_and_nightly_export_run_with_airflow_dags_test(airflow_db, emulator, hook, tmp_path):
    """``cm_setup``, then ``cm_upload_comments`` with one day of BANKING77, then ``cm_nightly_export`` of that day."""
    project = "p" + uuid.uuid4().hex[:10]
    day = [r for r in read_jsonl(BANKING77_JSONL) if r["comment"]["timestamp"].startswith(DAY.date().isoformat())]
    assert 50 < len(day) < 1000
    comments = tmp_path / "day.jsonl"
    comments.write_text("".join(json.dumps(record) + "\n" for record in day), encoding="utf-8")
    warehouse = tmp_path / "warehouse.db"
    env = {
        "CM_SOURCE": f"{project}/inbox",
        "CM_DATASET": f"{project}/support",
        "CM_WAREHOUSE_CONN_ID": "cm_compat_warehouse",
        "CM_LOOKBACK_DAYS": "0",
        "AIRFLOW_CONN_CM_COMPAT_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
    }

    airflow("dags", "test", "cm_setup", env=env)
    assert hook.get_dataset(f"{project}/support")["source_ids"] == [hook.get_source(f"{project}/inbox")["id"]]

    billed = emulator.billed()
    airflow("dags", "test", "cm_upload_comments", "--conf", json.dumps({"input_path": str(comments)}), env=env)
    assert emulator.billed() - billed == len(day)

    # A daily data-interval run covers the day before its logical date.
    airflow("dags", "test", "cm_nightly_export", (DAY + timedelta(days=1)).isoformat(), env=env)
    with sqlite3.connect(warehouse) as db:
        loaded = {row[0] for row in db.execute("SELECT comment_id FROM cm_comments")}
    assert loaded == {record["comment"]["id"] for record in day}


class RecordingSupervisor:
    """The trigger runner's channel to the triggerer's supervisor: records what the trigger sends."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def asend(self, msg: Any) -> None:
        self.sent.append(msg)

    def send(self, msg: Any) -> None:
        # Airflow 3.2's trigger runner cannot send synchronously from its event loop (asgiref refuses).
        raise RuntimeError("You cannot use AsyncToSync in the same thread as an async event loop")


def test_the_deferrable_sensors_trigger_fires_and_its_secrets_are_masked(airflow_db, emulator, hook, monkeypatch):
    """OAuth from the trigger's event loop: the client secret and the token it gets are masked in the runner's
    logs and sent to the triggerer's supervisor to mask in its own; on Airflow 3.2 (no ``amask_secret``) too."""
    from airflow.sdk._shared.secrets_masker import redact
    from airflow.sdk.execution_time import task_runner

    from airflow_provider_cm.triggers.streams import CommunicationsMiningStreamTrigger

    client_id, client_secret = "cm-compat-" + uuid.uuid4().hex[:8], "cm-compat-secret-" + uuid.uuid4().hex
    emulator.admin("POST", "oauth", {"clients": {client_id: client_secret}, "token_lifetime": 3600})
    extra = {"client_id": client_id, "client_secret": client_secret, "scope": "Reinfer.Api"}
    host = f"{emulator.url}/acme/production/reinfer_"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CM_COMPAT_OAUTH", json.dumps({"conn_type": "communications_mining", "host": host, "extra": extra})
    )
    supervisor = RecordingSupervisor()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", supervisor, raising=False)
    ws = new_workspace(hook)
    hook.put_stream(ws.dataset, "s")
    hook.sync_comments(ws.source, [make_record("c1", "2026-10-25T00:00:00Z")["comment"]])
    trigger = CommunicationsMiningStreamTrigger(
        dataset=ws.dataset,
        stream="s",
        poll_interval=0.05,
        hook_params={"communications_mining_conn_id": "cm_compat_oauth"},
    )
    assert redact(f"secret {client_secret}") == f"secret {client_secret}"  # not known yet: the check can fail
    issued_before = set(emulator.admin("POST", "oauth", {"list_tokens": True})["tokens"])

    async def first_event() -> dict[str, Any]:
        try:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("the trigger ended without an event")
        finally:
            await trigger.cleanup()

    event = asyncio.run(first_event())
    assert event["status"] == "success" and event["results"] == 1, event
    [token] = set(emulator.admin("POST", "oauth", {"list_tokens": True})["tokens"]) - issued_before
    masked = [msg.value for msg in supervisor.sent if type(msg).__name__ == "MaskSecret"]
    assert client_secret in masked and token in masked, masked
    line = f"client secret {client_secret}, token {token}"
    assert redact(line) == "client secret ***, token ***"


def test_the_event_trigger_fires_once_per_batch_on_this_airflow(emulator, hook, capfd):
    """Without an asset state store (3.2) it remembers in memory, and says so once."""
    from airflow_provider_cm.triggers.streams import CommunicationsMiningStreamEventTrigger

    ws = new_workspace(hook)
    hook.put_stream(ws.dataset, "s")
    for n in range(3):
        hook.sync_comments(ws.source, [make_record(f"c{n}", "2026-10-25T00:00:00Z")["comment"]])
    trigger = CommunicationsMiningStreamEventTrigger(dataset=ws.dataset, stream="s", batch_size=2, poll_interval=0.05)

    async def events(count: int, quiet: float) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []

        async def collect() -> None:
            async for event in trigger.run():
                seen.append(event.payload)
                if len(seen) == 1:
                    await asyncio.sleep(quiet)  # many polls of the same, unacknowledged batch
                    hook.advance_stream(ws.dataset, "s", event.payload["sequence_id"])
                if len(seen) == count:
                    return

        try:
            await asyncio.wait_for(collect(), 20)
        finally:
            await trigger.cleanup()
        return seen

    capfd.readouterr()
    first, second = asyncio.run(events(2, quiet=0.5))
    logged = capfd.readouterr()
    assert (first["results"], second["results"]) == (2, 1)
    assert first["first_uid"] != second["first_uid"]
    memory = [line for line in (logged.out + logged.err).splitlines() if "in memory only" in line]
    assert len(memory) == 1, memory
    if not HAS_ASSET_STATE_STORE:
        assert f"Airflow {AIRFLOW_VERSION} has no asset state store" in memory[0]
