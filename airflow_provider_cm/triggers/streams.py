"""Triggers that watch a Communications Mining stream from the triggerer, never advancing it.

* :class:`CommunicationsMiningStreamTrigger`: the deferrable sensor's trigger; fires once, when
  enough results wait, then ends.
* :class:`CommunicationsMiningStreamEventTrigger`: for event-driven scheduling (an ``AssetWatcher``
  on the stream's Asset); fires once for each batch of new results, for as long as it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_provider_cm.api.times import api_time
from airflow_provider_cm.client.user_times import to_utc
from airflow_provider_cm.common.compat import (
    AIRFLOW_VERSION,
    HAS_ASSET_STATE_STORE,
    asset_state_store,
    astore_get,
    astore_set,
    trigger_dict_argument,
)
from airflow_provider_cm.exceptions import CommunicationsMiningApiError, CommunicationsMiningConnectionError
from airflow_provider_cm.hooks.communications_mining import (
    MAX_STREAM_FETCH,
    CommunicationsMiningHook,
    split_full_name,
)


class _TriggerHookMixin:
    """One :class:`CommunicationsMiningHook` (one ``httpx.AsyncClient``) for a trigger's run, closed in ``cleanup``."""

    _hook: CommunicationsMiningHook | None = None

    def hook_kwargs(self) -> dict[str, Any]:
        """The keyword arguments the hook is built with."""
        raise NotImplementedError

    @property
    def hook(self) -> CommunicationsMiningHook:
        """The trigger's hook, one for its whole run."""
        if self._hook is None:
            self._hook = CommunicationsMiningHook(**self.hook_kwargs())
        return self._hook

    async def cleanup(self) -> None:
        """Close the trigger's HTTP client."""
        if self._hook is not None:
            await self._hook.aclose()


class CommunicationsMiningStreamTrigger(_TriggerHookMixin, BaseTrigger):
    """Poll a stream until at least ``min_results`` results wait in it, or a deadline passes.

    Runs in the triggerer's event loop: the connection is read asynchronously, and every poll goes
    through :meth:`CommunicationsMiningHook.afetch_stream` on one :class:`httpx.AsyncClient` (and
    one cached OAuth token) kept for the trigger's whole run and closed in :meth:`cleanup`. No
    worker slot is held. The stream is never advanced.

    Events:

    * ``{"status": "success", "results": n, "end_of_stream": bool}``: ``n`` results were seen in one
      fetch of ``batch_size`` comments; when ``end_of_stream`` is false, more may wait beyond them;
    * ``{"status": "timeout", "results": n, "end_of_stream": bool}`` when ``deadline`` passes first;
    * ``{"status": "error", "message": str, "error_type": str, "status_code": int | None,
      "route": str | None}`` when the API fails in a way the retry policy could not mend.

    :param dataset: ``"project/dataset"``.
    :param stream: the stream's name.
    :param min_results: results that must be waiting, 1 to ``batch_size``.
    :param batch_size: comments looked at per poll, 1 to 1,024.
    :param poll_interval: seconds between polls.
    :param deadline: Unix time (seconds) after which the trigger gives up; ``None`` waits forever.
    :param hook_params: keyword arguments of :class:`CommunicationsMiningHook` (connection id,
        retry overrides), as the sensor's ``hook_params`` gives them.
    """

    def __init__(
        self,
        *,
        dataset: str,
        stream: str,
        min_results: int = 1,
        batch_size: int = 256,
        poll_interval: float = 60.0,
        deadline: float | None = None,
        hook_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.stream = stream
        self.min_results = min_results
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.hook_params = dict(hook_params or {})

    def hook_kwargs(self) -> dict[str, Any]:
        return self.hook_params

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "dataset": self.dataset,
                "stream": self.stream,
                "min_results": self.min_results,
                "batch_size": self.batch_size,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "hook_params": self.hook_params,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            while True:
                batch = await self.hook.afetch_stream(self.dataset, self.stream, size=self.batch_size)
                seen = {"results": len(batch["results"]), "end_of_stream": batch["is_end_sequence"]}
                if seen["results"] >= self.min_results:
                    yield TriggerEvent({"status": "success", **seen})
                    return
                if self.deadline is not None and time.time() + self.poll_interval > self.deadline:
                    yield TriggerEvent({"status": "timeout", **seen})
                    return
                self.log.info(
                    "%s of %d results wait in stream %s of %s; next poll in %.0f s",
                    describe_count(seen["results"], seen["end_of_stream"]),
                    self.min_results,
                    self.stream,
                    self.dataset,
                    self.poll_interval,
                )
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:
            yield TriggerEvent(error_event(exc))


#: The asset state store key under which the event trigger remembers the batch it fired for.
STATE_KEY = "communications_mining_stream_batch"
#: The longest wait, in seconds, between polls while the API keeps failing (unless ``poll_interval`` is longer).
MAX_ERROR_BACKOFF = 600.0


class CommunicationsMiningStreamEventTrigger(_TriggerHookMixin, BaseEventTrigger):
    """Fire once for each batch of new results in a stream: event-driven scheduling, no sensor.

    Use it in an ``AssetWatcher`` on the stream's Asset
    (:func:`~airflow_provider_cm.common.assets.stream_asset`) and schedule the DAG that drains the stream
    on that Asset; the DAG takes one batch per run
    (``CommunicationsMiningStreamToSqlOperator(max_batches=1)``) and advances the stream past it::

        trigger = CommunicationsMiningStreamEventTrigger(dataset="demo/support", stream="new-messages")
        asset = stream_asset("demo/support", "new-messages", watchers=[AssetWatcher(name="batches", trigger=trigger)])

    It runs in the triggerer for as long as a DAG scheduled on the Asset is unpaused, holding no
    worker slot. Every ``poll_interval`` seconds it fetches the stream's next batch of
    ``batch_size`` comments with :meth:`CommunicationsMiningHook.afetch_stream`
    (``POST /api/v1/datasets/<project>/<dataset>/streams/<stream>/fetch``,
    https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/fetch-comments-from-a-stream-legacy.md),
    which never moves the stream: only the DAG run acknowledges what it loaded.

    **Once per batch, not once per poll.** A batch is identified by the comment that heads it (its
    first result's ``uid``; for a batch whose comments the stream's filter all drops, the batch's
    ``sequence_id``): while the stream is not advanced, the same comment heads it, even when more
    comments arrive behind it. The trigger fires when a batch with results (or one holding only
    filtered comments, which the drain skips past) heads the stream, and not again while that
    batch heads it. It fires again when the stream has moved past it (the DAG run advanced: a new
    comment heads the next batch), or when ``redelivery_timeout`` seconds have passed since it
    fired and the batch still heads the stream (the run failed before advancing: the batch is
    delivered again). A stream reset to before a batch already fired for is also seen only after
    the time-out.

    The batch it fired for, and when, is kept in the triggerer's asset state store of the Asset it
    watches (key :data:`STATE_KEY`), so it survives a restart of the trigger (the DAG paused and
    unpaused, re-parsed with other arguments) and of the triggerer. Without an asset state store
    (Airflow injects one into a watcher of exactly one Asset, from Airflow 3.3; Airflow 3.2 has
    none) it is kept in memory only, which a warning says: a restart may then fire once more for the
    same batch, never lose one, and the drain that event starts is idempotent (rows upserted by
    ``uid``; a batch already acknowledged is no longer in the stream). On Airflow 3.3.0 and 3.3.1,
    whose store has no asynchronous accessors, its synchronous ones are used in a worker thread. The event
    is fired before the state is written, so a crash between the two repeats an event (an extra
    run that finds the batch drained) rather than losing one.

    **Errors.** An API error that the hook's retry policy could not mend (token revoked, stream or
    dataset deleted, host unreachable) is logged at ERROR level with its status and route, and the
    trigger keeps polling with exponential backoff, from ``poll_interval`` doubling up to
    :data:`MAX_ERROR_BACKOFF` seconds (or ``poll_interval`` if longer); the first poll that works
    again is logged. It does not end and it fires no error event: an event would start a DAG run
    as if results were waiting, and a watcher that ends is started again by the triggerer at once,
    without backoff (as Airflow's own ``HttpEventTrigger`` does on error, the trigger logs and
    fires nothing). The error is visible in the triggerer's log; the DAG simply does not run.

    Event payload (JSON, no secrets; in the Asset event's ``extra["payload"]``):
    ``{"dataset", "stream", "sequence_id"`` (the batch's, which the run advances to when nothing
    arrived since), ``"first_uid"`` (``None`` for a filtered-only batch), ``"results"`` (results in
    the batch), ``"filtered"`` (comments of the batch the filter dropped), ``"end_of_stream"``,
    ``"results_waiting"`` (``"12"``, or ``"at least 1024"`` when the batch did not reach the end
    of the stream), ``"fired_at"`` (UTC, RFC 3339), ``"redelivered"`` (true when fired again for
    the same batch after ``redelivery_timeout``)``}``.

    :param dataset: ``"project/dataset"``.
    :param stream: the stream's name.
    :param communications_mining_conn_id: the Airflow connection.
    :param batch_size: comments per batch, 1 to 1,024 (filtered comments count too). It must be
        the ``batch_size`` of the operator that drains the stream, so that each DAG run takes
        exactly the batch that fired (default 1,024, the operator's default).
    :param poll_interval: seconds between polls (default 60).
    :param redelivery_timeout: seconds after which the trigger fires again for a batch that still
        heads the stream (default 3,600); longer than a DAG run takes, or a slow run gets a second
        one beside it. ``None`` never fires twice for one batch.
    :param hook_params: further keyword arguments of :class:`CommunicationsMiningHook` (e.g.
        ``retry_max_attempts``, ``retry_max_elapsed``). JSON-serialisable.
    :raises ValueError: for a bad ``dataset``, ``stream``, ``batch_size``, ``poll_interval`` or
        ``redelivery_timeout`` (when the DAG is parsed).
    """

    def __init__(
        self,
        *,
        dataset: str,
        stream: str,
        communications_mining_conn_id: str = CommunicationsMiningHook.default_conn_name,
        batch_size: int = MAX_STREAM_FETCH,
        poll_interval: float = 60.0,
        redelivery_timeout: float | None = 3600.0,
        hook_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        split_full_name(dataset, "dataset")
        if not isinstance(stream, str) or not stream:
            raise ValueError("stream must be a stream name")
        if not 1 <= batch_size <= MAX_STREAM_FETCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_STREAM_FETCH}, got {batch_size}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be more than 0 seconds, got {poll_interval}")
        if redelivery_timeout is not None and not redelivery_timeout > 0:
            raise ValueError(f"redelivery_timeout must be more than 0 seconds or None, got {redelivery_timeout}")
        self.dataset = dataset
        self.stream = stream
        self.communications_mining_conn_id = communications_mining_conn_id
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.redelivery_timeout = redelivery_timeout
        # Airflow 3.2 hands a watcher's dict argument back encoded (see compat.trigger_dict_argument).
        self.hook_params = dict(trigger_dict_argument(hook_params) or {})
        self._fired: dict[str, Any] | None = None
        self._state_loaded = False
        self._announced: str | None = None
        self._memory_only = False

    def hook_kwargs(self) -> dict[str, Any]:
        return {**self.hook_params, "communications_mining_conn_id": self.communications_mining_conn_id}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "dataset": self.dataset,
                "stream": self.stream,
                "communications_mining_conn_id": self.communications_mining_conn_id,
                "batch_size": self.batch_size,
                "poll_interval": self.poll_interval,
                "redelivery_timeout": self.redelivery_timeout,
                "hook_params": self.hook_params,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        failures = 0
        while True:
            try:
                if not self._state_loaded:
                    self._fired = await self._load_state()
                    self._state_loaded = True
                batch = await self.hook.afetch_stream(self.dataset, self.stream, size=self.batch_size)
            except Exception as exc:  # what the retry policy could not mend: say so, back off, go on
                failures += 1
                wait = self._error_backoff(failures)
                self._log_error(exc, failures, wait)
                await asyncio.sleep(wait)
                continue
            if failures:
                self.log.info(
                    "Stream %s of %s answers again after %d failed polls", self.stream, self.dataset, failures
                )
                failures = 0
            head = batch_identity(batch)
            event = self._event_for(batch, head) if head is not None else None
            if head is not None and event is not None:
                yield TriggerEvent(event)
                await self._remember(event, head)
            await asyncio.sleep(self.poll_interval)

    def _event_for(self, batch: Mapping[str, Any], head: str) -> dict[str, Any] | None:
        """The event to fire for the batch heading the stream (identified by ``head``), or ``None`` when not due."""
        now = datetime.now(timezone.utc)
        fired = self._fired
        redelivered = False
        if fired is not None and fired.get("batch") == head:
            since = (now - to_utc(fired["fired_at"], "fired_at")).total_seconds()
            if self.redelivery_timeout is None or since < self.redelivery_timeout:
                self._announce_waiting(head, fired["fired_at"])
                return None
            redelivered = True
            self.log.warning(
                "The batch fired for at %s still heads stream %s of %s after %.0f s (redelivery_timeout %.0f s): "
                "firing again, as its DAG run did not advance the stream",
                fired["fired_at"],
                self.stream,
                self.dataset,
                since,
                self.redelivery_timeout,
            )
        results = len(batch["results"])
        return {
            "dataset": self.dataset,
            "stream": self.stream,
            "sequence_id": batch["sequence_id"],
            "first_uid": first_uid(batch),
            "results": results,
            "filtered": batch["filtered"],
            "end_of_stream": batch["is_end_sequence"],
            "results_waiting": describe_count(results, batch["is_end_sequence"]),
            "fired_at": api_time(now),
            "redelivered": redelivered,
        }

    def _announce_waiting(self, head: str, fired_at: str) -> None:
        """Log once per batch that it is still waiting to be acknowledged."""
        if self._announced == head:
            return
        self._announced = head
        redelivery = (
            f"or fires again {self.redelivery_timeout:.0f} s after {fired_at}"
            if self.redelivery_timeout is not None
            else "(redelivery_timeout is None)"
        )
        self.log.info(
            "The batch heading stream %s of %s was fired for at %s and is not acknowledged yet: the trigger "
            "waits for the stream to move past it %s",
            self.stream,
            self.dataset,
            fired_at,
            redelivery,
        )

    async def _remember(self, event: Mapping[str, Any], head: str) -> None:
        """Keep the batch just fired for (``head``), in memory and in the asset state store."""
        self._fired = {
            "dataset": self.dataset,
            "stream": self.stream,
            "batch": head,
            "sequence_id": event["sequence_id"],
            "fired_at": event["fired_at"],
        }
        self._announced = None
        self.log.info(
            "Fired for a batch of %s results (%d filtered) in stream %s of %s, sequence_id %s%s",
            event["results_waiting"] if event["results"] else "0",
            event["filtered"],
            self.stream,
            self.dataset,
            event["sequence_id"],
            " (redelivered)" if event["redelivered"] else "",
        )
        store = asset_state_store(self)
        if store is None or self._memory_only:
            return
        try:
            await astore_set(store, STATE_KEY, self._fired)
        except Exception as exc:
            self.log.warning(
                "Could not keep the batch fired for in the asset state store (%s: %s); it is kept in memory, so a "
                "restart of the trigger may fire once more for it",
                type(exc).__name__,
                exc,
            )

    async def _load_state(self) -> dict[str, Any] | None:
        """The batch last fired for on this stream, from the asset state store (``None`` if none).

        :raises Exception: what the store raises when it cannot be read (the caller backs off and retries).
        """
        store = asset_state_store(self)
        if store is None:
            self._keep_in_memory(
                "it has no asset state store (it runs outside an AssetWatcher)"
                if HAS_ASSET_STATE_STORE
                else f"Airflow {AIRFLOW_VERSION} has no asset state store (3.3+)"
            )
            return self._fired
        try:
            stored = await astore_get(store, STATE_KEY)
        except ValueError as exc:  # the store serves exactly one watched Asset
            self._keep_in_memory(f"its asset state store cannot be used ({exc}): give the stream an Asset of its own")
            return self._fired
        if (
            isinstance(stored, dict)
            and stored.get("dataset") == self.dataset
            and stored.get("stream") == self.stream
            and isinstance(stored.get("batch"), str)
            and isinstance(stored.get("fired_at"), str)
        ):
            self.log.info(
                "Stream %s of %s: last fired at %s for the batch up to sequence_id %s (from the asset state store)",
                self.stream,
                self.dataset,
                stored["fired_at"],
                stored.get("sequence_id"),
            )
            return dict(stored)
        return None

    def _keep_in_memory(self, reason: str) -> None:
        self._memory_only = True
        self.log.warning(
            "The trigger on stream %s of %s keeps the batch it fired for in memory only, as %s; a restart of the "
            "trigger or the triggerer may fire once more for the same batch (the drain it starts is idempotent: it "
            "upserts by uid and finds an acknowledged batch gone)",
            self.stream,
            self.dataset,
            reason,
        )

    def _error_backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed polls in a row: ``poll_interval`` doubling, capped."""
        cap = max(self.poll_interval, MAX_ERROR_BACKOFF)
        return min(cap, self.poll_interval * 2 ** min(failures - 1, 30))

    def _log_error(self, exc: BaseException, failures: int, wait: float) -> None:
        error = error_event(exc)
        self.log.error(
            "Polling stream %s of %s failed (%s, HTTP status %s, route %s): %s; no event is fired, next poll in %g s "
            "(%d failed polls in a row)",
            self.stream,
            self.dataset,
            error["error_type"],
            error["status_code"],
            error["route"],
            error["message"],
            wait,
            failures,
        )


def first_uid(batch: Mapping[str, Any]) -> str | None:
    """The ``uid`` of a fetched batch's first result, or ``None`` when it has no results."""
    results = batch.get("results") or []
    if not results:
        return None
    uid = (results[0].get("comment") or {}).get("uid")
    return str(uid) if uid else None


def batch_identity(batch: Mapping[str, Any]) -> str | None:
    """What identifies the batch heading an unadvanced stream: its first result's ``uid``; for a batch
    holding only filtered comments, its ``sequence_id``; ``None`` for an empty batch (nothing waits)."""
    uid = first_uid(batch)
    if uid is not None:
        return uid
    if batch.get("filtered"):
        return f"filtered:{batch.get('sequence_id')}"
    return None


def describe_count(results: int, end_of_stream: bool) -> str:
    """``"12"`` when the fetch reached the end of the stream, else ``"at least 256"``: more may wait."""
    return str(results) if end_of_stream else f"at least {results}"


def error_event(exc: BaseException) -> dict[str, Any]:
    """The payload of an error event: the message, and the error's type, status and route when it has them."""
    status_code = exc.status_code if isinstance(exc, CommunicationsMiningApiError) else None
    route = exc.route if isinstance(exc, (CommunicationsMiningApiError, CommunicationsMiningConnectionError)) else None
    return {
        "status": "error",
        "message": str(exc),
        "error_type": type(exc).__name__,
        "status_code": status_code,
        "route": route,
    }
