"""The trigger that waits, in the triggerer, for new results in a Communications Mining stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_cm.exceptions import CommunicationsMiningApiError, CommunicationsMiningConnectionError
from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook


class CommunicationsMiningStreamTrigger(BaseTrigger):
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
        self._hook: CommunicationsMiningHook | None = None

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

    @property
    def hook(self) -> CommunicationsMiningHook:
        """The trigger's hook, one for its whole run."""
        if self._hook is None:
            self._hook = CommunicationsMiningHook(**self.hook_params)
        return self._hook

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

    async def cleanup(self) -> None:
        """Close the trigger's HTTP client."""
        if self._hook is not None:
            await self._hook.aclose()


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
