"""The write-ahead journal: one JSON line per acknowledged write, on disk before the answer.

Each line is written, flushed and fsynced before the route answers, so an acknowledged write
survives the emulator being killed (SIGKILL) or the machine losing power. At start the journal is
replayed onto the snapshot and then compacted into it. A line torn by a crash in the middle of a
write was never acknowledged; replay stops there.
"""

from __future__ import annotations

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

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and make it durable before returning."""
        if self._file is None:
            self._file = open(self.path, "ab")
        self._file.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def size(self) -> int:
        """Bytes written to the journal since it was last emptied."""
        return self._file.tell() if self._file is not None else 0

    def clear(self) -> None:
        """Empty the journal (after its records went into a snapshot)."""
        self.close()
        with open(self.path, "wb") as handle:
            os.fsync(handle.fileno())

    def close(self) -> None:
        """Close the file; the next :meth:`append` reopens it."""
        if self._file is not None:
            self._file.close()
            self._file = None
