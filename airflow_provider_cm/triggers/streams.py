"""The trigger that waits, in the triggerer, for new results in a Communications Mining stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook


class CommunicationsMiningStreamTrigger(BaseTrigger):
    """Poll a stream until at least ``min_results`` results wait in it, or a deadline passes.

    Runs in the triggerer's event loop: the connection is read asynchronously and requests go
    through :meth:`CommunicationsMiningHook.afetch_stream` (``httpx``), so no worker slot is held.
    The stream is never advanced.

    Events: ``{"status": "success", "results": n}``, ``{"status": "timeout", "results": n}`` when
    ``deadline`` (a Unix time in seconds) passes first, or ``{"status": "error", "message": ...}``.

    :param dataset: ``"project/dataset"``.
    :param stream: the stream's name.
    :param min_results: results that must be waiting, 1 to ``batch_size``.
    :param batch_size: comments looked at per poll, 1 to 1,024.
    :param poll_interval: seconds between polls.
    :param deadline: Unix time (seconds) after which the trigger gives up; ``None`` waits forever.
    :param communications_mining_conn_id: the Airflow connection.
    :param retry_max_attempts: attempts per API request, overriding the connection's setting.
    :param retry_max_elapsed: seconds per API request across attempts, overriding the connection's.
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
        communications_mining_conn_id: str = CommunicationsMiningHook.default_conn_name,
        retry_max_attempts: int | None = None,
        retry_max_elapsed: float | None = None,
    ) -> None:
        super().__init__()
        self.retry_max_attempts = retry_max_attempts
        self.retry_max_elapsed = retry_max_elapsed
        self.dataset = dataset
        self.stream = stream
        self.min_results = min_results
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.communications_mining_conn_id = communications_mining_conn_id

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
                "communications_mining_conn_id": self.communications_mining_conn_id,
                "retry_max_attempts": self.retry_max_attempts,
                "retry_max_elapsed": self.retry_max_elapsed,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = CommunicationsMiningHook(
            self.communications_mining_conn_id,
            retry_max_attempts=self.retry_max_attempts,
            retry_max_elapsed=self.retry_max_elapsed,
        )
        results = 0
        try:
            while True:
                batch = await hook.afetch_stream(self.dataset, self.stream, size=self.batch_size)
                results = len(batch["results"])
                if results >= self.min_results:
                    yield TriggerEvent({"status": "success", "results": results})
                    return
                if self.deadline is not None and time.time() + self.poll_interval > self.deadline:
                    yield TriggerEvent({"status": "timeout", "results": results})
                    return
                self.log.info(
                    "%d of %d results wait in stream %s of %s; next poll in %.0f s",
                    results,
                    self.min_results,
                    self.stream,
                    self.dataset,
                    self.poll_interval,
                )
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": str(exc), "results": results})
