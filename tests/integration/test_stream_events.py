"""The stream's event trigger over real HTTP against the emulator: one event per batch, not per poll.

The trigger runs as the triggerer runs a watcher: its ``run()`` iterated in an event loop for as
long as it is wanted. The asset state store it remembers batches in is Airflow's own: the
accessor the triggerer injects, Airflow's request handlers and in-process execution API (what the
triggerer's supervisor uses) and the ``asset_state_store`` table of the test metadata database.
Only the socket between the trigger runner and its supervisor is replaced, by a direct call.
What needs the scheduler and a real triggerer (N batches give N DAG runs, a triggerer restart)
is in ``tests/deployment/test_stream_events.py``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from airflow.sdk import Asset

from airflow_provider_cm.common.assets import stream_asset
from airflow_provider_cm.common.compat import AIRFLOW_VERSION, HAS_ASSET_STATE_STORE
from airflow_provider_cm.triggers.streams import STATE_KEY, CommunicationsMiningStreamEventTrigger
from tests.conftest import TOKEN, make_record

#: Seconds between polls in these tests; QUIET covers many polls.
POLL = 0.05
QUIET = 0.6
#: Seconds an event may take to come.
WAIT = 10.0


class Watch:
    """A trigger's ``run()`` in a background task, its events in a queue, as the triggerer runs a watcher."""

    def __init__(self, trigger: CommunicationsMiningStreamEventTrigger) -> None:
        self.trigger = trigger
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.trigger.run():
            self.events.put_nowait(event.payload)

    async def next_event(self, timeout: float = WAIT) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self.events.get(), timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            self._raise_if_ended()
            raise AssertionError(f"no event in {timeout} s") from None

    async def no_event(self, seconds: float = QUIET) -> None:
        """Nothing fired for ``seconds`` (many polls), and the trigger is still running."""
        await asyncio.sleep(seconds)
        self._raise_if_ended()
        assert self.events.empty(), f"fired again: {self.events.get_nowait()}"

    def _raise_if_ended(self) -> None:
        if self.task.done():
            raise AssertionError(f"the trigger ended: {self.task.exception()!r}")

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        await self.trigger.cleanup()


@asynccontextmanager
async def watching(trigger: CommunicationsMiningStreamEventTrigger) -> AsyncIterator[Watch]:
    watch = Watch(trigger)
    try:
        yield watch
    finally:
        await watch.stop()


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true after {timeout} s"
        await asyncio.sleep(0.05)


def scenario(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


def new_trigger(ws: Any, stream: str = "s", **kwargs: Any) -> CommunicationsMiningStreamEventTrigger:
    return CommunicationsMiningStreamEventTrigger(
        dataset=ws.dataset, stream=stream, **{"batch_size": 2, "poll_interval": POLL, **kwargs}
    )


def upload(hook: Any, ws: Any, count: int, channel: str = "email") -> list[str]:
    """``count`` new comments in the workspace's source; their uids, in upload (stream) order."""
    uids = []
    for _ in range(count):
        comment = make_record("c" + uuid.uuid4().hex[:12], "2026-10-25T00:00:00Z", "my card was stolen")["comment"]
        comment["user_properties"] = {"string:Channel": channel}
        hook.sync_comments(ws.source, [comment])  # one by one: the stream orders by upload time
        uids.append(f"{ws.source_id}.{comment['id']}")
    return uids


def test_fires_once_per_batch_and_again_only_after_the_stream_moved_past_it(workspace, hook):
    ws = workspace
    hook.put_stream(ws.dataset, "s")

    async def body() -> None:
        async with watching(new_trigger(ws)) as watch:
            await watch.no_event()  # an empty stream fires nothing
            uids = upload(hook, ws, 5)

            first = await watch.next_event()
            head = hook.fetch_stream(ws.dataset, "s", size=2)
            assert first == {
                "dataset": ws.dataset,
                "stream": "s",
                "sequence_id": head["sequence_id"],
                "first_uid": uids[0],
                "results": 2,
                "filtered": 0,
                "end_of_stream": False,
                "results_waiting": "at least 2",
                "fired_at": first["fired_at"],
                "redelivered": False,
            }
            json.dumps(first)
            await watch.no_event()  # the same batch, unacknowledged, polled again and again: no event

            hook.advance_stream(ws.dataset, "s", first["sequence_id"])
            second = await watch.next_event()
            assert (second["first_uid"], second["results"], second["end_of_stream"]) == (uids[2], 2, False)
            await watch.no_event()

            hook.advance_stream(ws.dataset, "s", second["sequence_id"])
            third = await watch.next_event()
            assert (third["first_uid"], third["results"], third["results_waiting"]) == (uids[4], 1, "1")
            assert third["end_of_stream"] is True
            # A comment arriving behind the unacknowledged batch makes it longer, not new.
            [late] = upload(hook, ws, 1)
            await watch.no_event()

            hook.advance_stream(ws.dataset, "s", third["sequence_id"])  # what the run saw: the late one stays
            fourth = await watch.next_event()
            assert (fourth["first_uid"], fourth["results"]) == (late, 1)
            hook.advance_stream(ws.dataset, "s", fourth["sequence_id"])
            await watch.no_event()  # drained

    scenario(body)


def test_fires_again_for_the_same_batch_after_the_redelivery_timeout(workspace, hook):
    ws = workspace
    hook.put_stream(ws.dataset, "s")
    upload(hook, ws, 3)

    async def body() -> None:
        async with watching(new_trigger(ws, redelivery_timeout=1.0)) as watch:
            first = await watch.next_event()
            fired = time.monotonic()
            await watch.no_event(0.5)
            again = await watch.next_event()
            assert time.monotonic() - fired >= 1.0
            assert again["redelivered"] is True and first["redelivered"] is False
            assert (again["first_uid"], again["sequence_id"]) == (first["first_uid"], first["sequence_id"])
            await watch.no_event(0.5)  # the time-out counts again from the redelivery
            hook.advance_stream(ws.dataset, "s", again["sequence_id"])
            moved = await watch.next_event()
            assert moved["redelivered"] is False and moved["first_uid"] != first["first_uid"]

        async with watching(new_trigger(ws, redelivery_timeout=None)) as never:
            await never.next_event()
            await never.no_event(1.2)

    scenario(body)


def test_a_batch_the_filter_drops_entirely_fires_once_so_that_a_run_skips_past_it(workspace, hook):
    """Without an event for it, nothing would advance past it and the results behind it would wait forever."""
    ws = workspace
    hook.put_stream(ws.dataset, "s", comment_filter={"user_properties": {"string:Channel": {"one_of": ["email"]}}})
    upload(hook, ws, 2, channel="chat")
    [uid] = upload(hook, ws, 1)

    async def body() -> None:
        async with watching(new_trigger(ws)) as watch:
            dropped = await watch.next_event()
            assert (dropped["results"], dropped["filtered"], dropped["first_uid"]) == (0, 2, None)
            assert dropped["results_waiting"] == "at least 0"
            await watch.no_event()
            hook.advance_stream(ws.dataset, "s", dropped["sequence_id"])  # what the drain does with such a batch
            kept = await watch.next_event()
            assert (kept["results"], kept["filtered"], kept["first_uid"]) == (1, 0, uid)

    scenario(body)


def test_serialize_round_trips_and_arguments_are_checked_when_the_dag_is_parsed():
    trigger = CommunicationsMiningStreamEventTrigger(
        dataset="demo/support",
        stream="new-messages",
        communications_mining_conn_id="cm_other",
        batch_size=16,
        poll_interval=5.0,
        redelivery_timeout=None,
        hook_params={"retry_max_attempts": 2},
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_cm.triggers.streams.CommunicationsMiningStreamEventTrigger"
    assert CommunicationsMiningStreamEventTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert trigger.hook_kwargs() == {"retry_max_attempts": 2, "communications_mining_conn_id": "cm_other"}
    default = CommunicationsMiningStreamEventTrigger(dataset="demo/support", stream="new-messages")
    assert (default.batch_size, default.poll_interval, default.redelivery_timeout) == (1024, 60.0, 3600.0)

    for bad, match in (
        ({"dataset": "support"}, "project/name"),
        ({"stream": ""}, "stream"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1025}, "batch_size"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"redelivery_timeout": 0}, "redelivery_timeout"),
    ):
        with pytest.raises(ValueError, match=match):
            CommunicationsMiningStreamEventTrigger(**{"dataset": "demo/support", "stream": "s", **bad})

    asset = stream_asset("demo/support", "new-messages")
    assert (asset.name, asset.uri) == (
        "communications_mining_stream/demo/support/new-messages",
        "communications-mining-stream://demo/support/new-messages",
    )


# -- the asset state store ---------------------------------------------------------------------------


class TriggererSupervisor:
    """The triggerer's supervisor end of the trigger runner's socket, called directly.

    Each asset-state-store message goes to the request handler the triggerer's supervisor uses,
    with a client on the in-process execution API, as ``TriggerRunnerSupervisor`` builds it.
    """

    def __init__(self) -> None:
        from airflow.sdk.api.client import Client

        from tests.airflow_internals import in_process_api_server

        self.client = Client(base_url=None, token="", dry_run=True, transport=in_process_api_server().transport)
        self.client.base_url = "http://in-process.invalid./"  # type: ignore[assignment]

    def send(self, msg: Any) -> Any:
        from airflow.sdk.execution_time import comms
        from airflow.sdk.execution_time import request_handlers as handlers

        if isinstance(msg, comms.GetAssetStateStoreByName):
            return handlers.handle_get_asset_state_store_by_name(self.client, msg)[0]
        if isinstance(msg, comms.SetAssetStateStoreByName):
            return handlers.handle_set_asset_state_store_by_name(self.client, msg)[0]
        raise AssertionError(f"the trigger sent an unexpected message: {msg!r}")

    async def asend(self, msg: Any) -> Any:
        # In a thread, as the supervisor answers from another process: the trigger's loop goes on meanwhile.
        return await asyncio.to_thread(self.send, msg)


@pytest.fixture
def watched_asset(airflow_db, monkeypatch) -> Asset:
    """An active Asset in the metadata database, and the triggerer's supervisor to reach its state store."""
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.sdk.execution_time import task_runner
    from airflow.utils.session import create_session

    asset = stream_asset(f"p{uuid.uuid4().hex[:10]}/support", "s")
    with create_session() as session:
        session.add(AssetModel(name=asset.name, uri=asset.uri))
        session.add(AssetActive(name=asset.name, uri=asset.uri))
    supervisor = TriggererSupervisor()
    supervisor.client.asset_state_store.get(STATE_KEY, name=asset.name)  # builds the API app: seconds, once
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", supervisor, raising=False)
    return asset


def as_watcher(trigger: CommunicationsMiningStreamEventTrigger, asset: Asset) -> CommunicationsMiningStreamEventTrigger:
    """What the triggerer does before ``run()`` for a watcher of ``asset``: inject its state store accessors."""
    from airflow.sdk.execution_time.context import AssetStateStoreAccessors

    trigger.asset_state_store = AssetStateStoreAccessors(inlets=[Asset(name=asset.name, uri=asset.uri)])
    return trigger


def stored_state(asset: Asset) -> tuple[dict[str, Any], str] | None:
    """The trigger's row of the ``asset_state_store`` table: its value and who wrote it."""
    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(AssetStateStoreModel.value, AssetStateStoreModel.last_updated_by_kind)
            .join(AssetModel, AssetModel.id == AssetStateStoreModel.asset_id)
            .where(AssetModel.name == asset.name, AssetStateStoreModel.key == STATE_KEY)
        ).one_or_none()
    return (json.loads(row[0]), row[1]) if row else None


#: Airflow 3.2 has no asset state store: the trigger remembers in memory (the test below the next).
needs_asset_state_store = pytest.mark.skipif(
    not HAS_ASSET_STATE_STORE, reason=f"Airflow {AIRFLOW_VERSION} has no asset state store (3.3+)"
)


class SyncOnlyStore:
    """An asset state store as Airflow 3.3.0 and 3.3.1 inject it: ``get`` and ``set``, no ``aget``/``aset``."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.calls.append("get")
        return self._store.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.calls.append("set")
        self._store.set(key, value)


@pytest.mark.parametrize("form", ["AssetWatcher", "MessageQueueTrigger"])
def test_the_trigger_the_triggerer_builds_has_the_arguments_the_dag_gave(form: str):
    """Through Airflow's own path: the DAG's trigger encoded (DAG serialisation, then the dag processor's
    trigger rows), its kwargs encrypted and decrypted, the trigger built from them as the triggerer does.
    On Airflow 3.2 the dict argument ``hook_params`` comes back still encoded; the trigger decodes it.
    """
    from airflow.models.trigger import Trigger
    from airflow.serialization.encoders import encode_trigger

    arguments: dict[str, Any] = {
        "dataset": "demo/support",
        "stream": "new-messages",
        "poll_interval": 5.0,
        "hook_params": {"retry_max_attempts": 2, "retry_max_elapsed": 30.0},
    }
    if form == "MessageQueueTrigger":
        from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

        trigger: Any = MessageQueueTrigger(scheme="communications-mining", **arguments)
    else:
        trigger = CommunicationsMiningStreamEventTrigger(**arguments)
    row = encode_trigger(encode_trigger(trigger))
    kwargs = Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(row["kwargs"]))
    module, _, name = row["classpath"].rpartition(".")
    built = getattr(importlib.import_module(module), name)(**kwargs)
    assert isinstance(built, CommunicationsMiningStreamEventTrigger)
    assert built.hook_params == arguments["hook_params"]
    assert built.hook_kwargs()["retry_max_attempts"] == 2
    assert built.serialize() == CommunicationsMiningStreamEventTrigger(**arguments).serialize()


@needs_asset_state_store
@pytest.mark.parametrize("accessors", ["async", "sync only"])
def test_the_batch_fired_for_is_remembered_in_the_asset_state_store_across_trigger_instances(
    workspace, hook, watched_asset, accessors
):
    ws = workspace
    hook.put_stream(ws.dataset, "s")
    uids = upload(hook, ws, 3)

    sync_stores: list[SyncOnlyStore] = []

    def watcher(trigger: CommunicationsMiningStreamEventTrigger) -> CommunicationsMiningStreamEventTrigger:
        as_watcher(trigger, watched_asset)
        if accessors == "sync only":
            sync_stores.append(SyncOnlyStore(trigger.asset_state_store))
            trigger.asset_state_store = sync_stores[-1]
        return trigger

    async def body() -> None:
        first_instance = watcher(new_trigger(ws))
        async with watching(first_instance) as watch:
            first = await watch.next_event()
            await watch.no_event(0.3)
        value, writer = stored_state(watched_asset) or ({}, None)
        assert writer == "watcher"
        assert value == {
            "dataset": ws.dataset,
            "stream": "s",
            "batch": uids[0],
            "sequence_id": first["sequence_id"],
            "fired_at": first["fired_at"],
        }

        # A new instance (the triggerer restarted, or the trigger was re-created) reads it back.
        _, kwargs = first_instance.serialize()
        async with watching(watcher(CommunicationsMiningStreamEventTrigger(**kwargs))) as watch:
            await watch.no_event()
            hook.advance_stream(ws.dataset, "s", first["sequence_id"])
            second = await watch.next_event()
            assert second["first_uid"] == uids[2]
            # Written right after the event is handed over (a crash in between repeats the event).
            await until(lambda: (stored_state(watched_asset) or ({}, None))[0].get("batch") == uids[2])

        # Without the store, a new instance knows nothing and fires for the same batch again.
        async with watching(CommunicationsMiningStreamEventTrigger(**kwargs)) as memory_only:
            assert (await memory_only.next_event())["first_uid"] == uids[2]

    scenario(body)
    # Read and written through get/set alone (in a thread), as on Airflow 3.3.0 and 3.3.1.
    assert [sorted(set(store.calls)) for store in sync_stores] == ([["get", "set"]] * 2 if sync_stores else [])


def test_without_an_asset_state_store_the_batch_is_remembered_in_memory_and_a_warning_says_so(workspace, hook, capfd):
    """Outside an AssetWatcher, and on Airflow 3.2 always: once per batch still, for as long as the trigger runs."""
    ws = workspace
    hook.put_stream(ws.dataset, "s")
    uids = upload(hook, ws, 3)

    async def body() -> None:
        async with watching(new_trigger(ws)) as watch:
            first = await watch.next_event()
            assert first["first_uid"] == uids[0]
            await watch.no_event()
            hook.advance_stream(ws.dataset, "s", first["sequence_id"])
            assert (await watch.next_event())["first_uid"] == uids[2]

    capfd.readouterr()
    scenario(body)
    logged = capfd.readouterr()
    warnings = [line for line in (logged.out + logged.err).splitlines() if "in memory only" in line]
    assert len(warnings) == 1, warnings
    reason = "has no asset state store (3.3+)" if not HAS_ASSET_STATE_STORE else "it runs outside an AssetWatcher"
    assert reason in warnings[0] and "fire once more for the same batch" in warnings[0], warnings


def test_api_errors_are_logged_and_polling_goes_on_with_backoff(workspace, hook, capfd):
    """A missing stream (HTTP 404, which no retry mends): no event, no end; it fires once the stream works."""
    ws = workspace

    async def body() -> None:
        async with watching(new_trigger(ws, stream="later")) as watch:
            await watch.no_event(0.8)  # polls 0.05, 0.1, 0.2, 0.4 s... apart: about four failures
            hook.put_stream(ws.dataset, "later")
            [uid] = upload(hook, ws, 1)
            event = await watch.next_event()
            assert event["first_uid"] == uid

    capfd.readouterr()
    scenario(body)
    logged = capfd.readouterr()
    lines = (logged.out + logged.err).splitlines()
    failures = [line for line in lines if "Polling stream later" in line]
    assert 3 <= len(failures) <= 6, lines
    assert all("[error" in line for line in failures), failures
    assert "CommunicationsMiningNotFoundError, HTTP status 404, route POST /api/v1/datasets/" in failures[0]
    waits = [float(line.split("next poll in ")[1].split(" s")[0]) for line in failures]
    assert waits == [POLL * 2**n for n in range(len(waits))], waits
    assert any("answers again after" in line for line in lines)
    assert TOKEN not in logged.out + logged.err
