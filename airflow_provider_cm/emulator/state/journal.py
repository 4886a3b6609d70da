"""The write-ahead journal: one JSON line per acknowledged write, on disk before the answer.

Each line is written and flushed to the operating system while the write holds the store's lock
(from then on a SIGKILL of the emulator cannot lose it), then fsynced before the route answers
(so it survives the machine losing power too). Routes waiting at the same time share one fsync,
run off the event loop: a group commit. At start the journal is replayed onto the snapshot and
then compacted into it. A line torn by a crash in the middle of a write was never acknowledged;
replay stops there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from typing import IO, Any

log = logging.getLogger(__name__)


class Journal:
    """An append-only file of JSON records next to the state snapshot (``<state>.journal``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._appended = 0  # records written since start
        self._synced = 0  # of which on disk
        self._generation = 0  # bumped whenever the file is emptied
        self._syncing: asyncio.Future[None] | None = None

    def records(self) -> Iterator[dict[str, Any]]:
        """The records written so far, in order, up to the first torn or unreadable line."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    record = json.loads(line)
                except ValueError:
                    log.warning("%s: line %d is incomplete (a write cut short); replay stops there", self.path, number)
                    return
                if isinstance(record, dict):
                    yield record

    def append(self, record: dict[str, Any]) -> int:
        """Write one record and flush it to the operating system; its number for :meth:`durable`."""
        if self._file is None:
            self._file = open(self.path, "ab")
        self._file.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n")
        self._file.flush()
        self._appended += 1
        return self._appended

    async def durable(self, number: int) -> None:
        """Return once record ``number`` is fsynced; callers waiting together share one fsync."""
        while self._synced < number:
            if self._syncing is None or self._syncing.done():
                self._syncing = asyncio.ensure_future(self._fsync())
            await asyncio.shield(self._syncing)

    async def _fsync(self) -> None:
        target, generation, handle = self._appended, self._generation, self._file
        if handle is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, os.fsync, handle.fileno())
            except (OSError, ValueError):
                if generation == self._generation:
                    raise
                # emptied meanwhile: its records are in the (fsynced) snapshot
        self._synced = max(self._synced, target)

    def size(self) -> int:
        """Bytes written to the journal since it was last emptied."""
        return self._file.tell() if self._file is not None else 0

    def clear(self) -> None:
        """Empty the journal (after its records went into a snapshot)."""
        self.close()
        with open(self.path, "wb") as handle:
            os.fsync(handle.fileno())
        self._generation += 1
        self._synced = self._appended

    def close(self) -> None:
        """Close the file; the next :meth:`append` reopens it."""
        if self._file is not None:
            self._file.close()
            self._file = None
