"""The store: one emulated tenant (:class:`~.tenant.Tenant`) under a lock, journaled and saved,
with the test knobs (:class:`~.knobs.Knobs`) beside it.

Routes never lock or save anything themselves: they hand a function to :meth:`Store.write` (or
:meth:`Store.read`), which runs it under the lock and, with a ``state_path``, appends what it
changed to the journal and returns only once that is on disk, so the route answers only then.
The function changes the tenant only through the tenant's change methods, which mark what they change.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from airflow_provider_cm.emulator.fault_injection.knobs import Knobs
from airflow_provider_cm.emulator.state import persistence
from airflow_provider_cm.emulator.state.journal import Journal
from airflow_provider_cm.emulator.state.tenant import Tenant

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Compact the journal into the snapshot once it is this large.
COMPACT_AFTER_BYTES = 64 * 1024 * 1024


def new_id() -> str:
    """A fresh 16-hex-digit id, the form the API's ids take."""
    return secrets.token_hex(8)


class Store(Tenant):
    """All data of one emulated tenant, with the emulator's test knobs beside it (:attr:`knobs`).

    :param state_path: JSON snapshot to load at start and keep up to date (with its journal
        ``<state_path>.journal``); ``None`` keeps everything in memory. Its folder is created
        when missing.
    """

    def __init__(self, state_path: str | None = None) -> None:
        super().__init__()
        self.state_path = state_path
        self.lock = threading.RLock()
        self.knobs = Knobs()
        if state_path:
            os.makedirs(os.path.dirname(os.path.abspath(state_path)), exist_ok=True)
        self.journal = Journal(state_path + ".journal") if state_path else None
        if state_path:
            self._recover(state_path)

    # -- running reads and writes -----------------------------------------------------------------

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(store, *args)`` under the lock, journaling nothing: reads, and run-time settings."""
        with self.lock:
            return fn(self, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(store, *args)`` under the lock, then return once what it touched is on disk."""
        with self.lock:
            try:
                result = fn(self, *args)
            finally:
                number = self._commit()
        if number and self.journal is not None:
            await self.journal.durable(number)
        return result

    def _commit(self) -> int:
        """Journal what the last write touched; the record's number (0 if nothing to journal)."""
        keys = self.take_touched()
        if not keys or self.journal is None:
            return 0
        number = self.journal.append(persistence.journal_record(self, keys))
        if self.journal.size() > COMPACT_AFTER_BYTES:
            self.save()
        return number

    # -- persistence ------------------------------------------------------------------------------

    def _recover(self, path: str) -> None:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                persistence.load_snapshot(self, json.load(handle))
        assert self.journal is not None
        replayed = 0
        for record in self.journal.records():
            persistence.apply_record(self, record)
            replayed += 1
        if replayed:
            log.info("replayed %d journal record(s) from %s", replayed, self.journal.path)
        self._version += 1
        self.save()

    def save(self) -> None:
        """Write the snapshot and empty the journal (its records are in the snapshot now)."""
        if not self.state_path:
            return
        with self.lock:
            persistence.write_snapshot(self.state_path, persistence.snapshot(self))
            if self.journal is not None:
                self.journal.clear()

    def close(self) -> None:
        """Compact the journal into the snapshot and close it (at shutdown)."""
        self.save()
        if self.journal is not None:
            self.journal.close()

    def reset(self) -> None:
        """Forget every object, counter and comment rejection (fault rules stay)."""
        with self.lock:
            self.clear_data()
            self.knobs.forget_requests()
            self.save()

    def stats(self) -> dict[str, Any]:
        """Counters for tests: billing, stored comments, requests per route, faults, throttling."""
        return {
            "billed_comments": self.billed_comments,
            "billed_predictions": self.billed_predictions,
            "billed_by_source": dict(self.billed_by_source),
            "comments": sum(len(s.comments) for s in self.sources.values()),
            "requests_by_route": dict(self.knobs.requests_by_route),
            "token_requests": self.knobs.oauth.requests,
            "faults_injected": dict(self.knobs.faults_injected),
            "throttled": self.knobs.rate_limit.throttled if self.knobs.rate_limit else 0,
        }
