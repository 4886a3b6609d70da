"""The JSONL file a draining stream fetch writes: each batch durable before the stream moves past it,
the complete file under its final name only at the end, in time and memory linear in the results.

A local target (``/data/x.jsonl``, ``file://...``) is written through a spool beside it,
``.<name>.drain``: every batch is appended to the spool and flushed to disk (``fsync``), and the
finished spool is renamed onto the final name, so readers never see a partial file there. A retried
try finds the spool (or the finished file of an earlier try) and extends it: what was acknowledged
is kept. A line cut by a crash in the middle of a write belongs to a batch that was not
acknowledged (it is fetched again) and is dropped.

Object stores cannot append, and a retried try may run on another worker, so for them each batch
is written once as a **part** of its own, ``part-000001.jsonl``, ``part-000002.jsonl``... under
``.<name>.parts/`` beside the final object; the part is stored (the write closed) before the
stream moves past it. At the end the parts are assembled, in order, into the final object
(through a temporary object renamed onto the final name) and removed. A retried try, on any
worker, lists the parts the earlier tries stored and goes on after them. Bytes sent grow linearly
with the results: each result is sent twice (its part, then the final object) and read back once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import IO

from airflow.sdk import ObjectStoragePath

from airflow_provider_cm.common.storage import atomic_write

_CHUNK = 1 << 20


def _count_lines(handle: IO[bytes]) -> tuple[int, int, bool]:
    """Complete lines in ``handle``, the byte offset just past the last of them, and whether bytes follow it."""
    count = offset = position = 0
    while chunk := handle.read(_CHUNK):
        newlines = chunk.count(b"\n")
        if newlines:
            count += newlines
            offset = position + chunk.rindex(b"\n") + 1
        position += len(chunk)
    return count, offset, position > offset


def _sync_directory(path: Path) -> None:
    """Flush a directory's entries (a file created or renamed in it) to disk, where the OS allows it."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class DrainOutput:
    """Lines appended batch by batch to ``final``, placed there complete by :meth:`finish`.

    Use: :meth:`open` (the results an earlier try kept), :meth:`append` per batch (durable when it
    returns), :meth:`finish` once, :meth:`close` always. :attr:`count` is the number of results
    the file holds.
    """

    def __init__(self, final: ObjectStoragePath) -> None:
        self.final = final
        self.count = 0
        self.local = final.protocol in ("file", "local")
        self._handle: IO[bytes] | None = None
        #: Object-store targets: the parts stored so far, in order, and whether the final object starts them.
        self._parts: list[ObjectStoragePath] = []
        self._from_final = False

    @property
    def parts(self) -> ObjectStoragePath:
        """Where an object-store target's parts are kept: ``.<name>.parts/`` beside the final object."""
        return self.final.parent / f".{self.final.name}.parts"

    @property
    def spool(self) -> Path:
        """The local spool, ``.<name>.drain`` beside the final file (local targets only)."""
        path = Path(self.final.path)
        return path.with_name(f".{path.name}.drain")

    def open(self) -> int:
        """Prepare to append; return the results an earlier try of the task left (and keeps)."""
        if not self.local:
            return self._open_parts()
        spool = self.spool
        spool.parent.mkdir(parents=True, exist_ok=True)
        if not spool.exists() and self.final.exists():
            self._copy_final_to(spool)
        created = not spool.exists()
        self._handle = open(spool, "ab+")
        if created:
            _sync_directory(spool.parent)
        self._handle.seek(0)
        self.count, complete, _ = _count_lines(self._handle)
        self._handle.truncate(complete)  # a line a crash cut short: its batch was not acknowledged
        self._handle.seek(0, os.SEEK_END)
        return self.count

    def _open_parts(self) -> int:
        """Count what the final object (an earlier finished try) and the stored parts hold."""
        if self.final.exists():
            self._from_final = True
            self.count += self._lines_in(self.final)
        if self.parts.exists():
            self._parts = sorted(
                (p for p in self.parts.iterdir() if p.name.startswith("part-") and p.name.endswith(".jsonl")),
                key=lambda p: p.name,
            )
            self.count += sum(self._lines_in(part) for part in self._parts)
        return self.count

    @staticmethod
    def _lines_in(path: ObjectStoragePath) -> int:
        with path.open("rb") as handle:
            lines, _, tail = _count_lines(handle)
        return lines + tail

    def restart(self) -> None:
        """Drop what the spool holds: the results are being delivered again from the stream."""
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate(0)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        self.count = 0

    def _copy_final_to(self, spool: Path) -> None:
        """Start the spool from the file an earlier try finished (the final file stays until replaced)."""
        partial = spool.with_name(spool.name + ".copy")
        with open(Path(self.final.path), "rb") as source, open(partial, "wb") as copy:
            shutil.copyfileobj(source, copy, _CHUNK)
            copy.seek(0, os.SEEK_END)
            if copy.tell():
                source.seek(-1, os.SEEK_END)
                if source.read(1) != b"\n":
                    copy.write(b"\n")  # a last line without its newline is still a result
            copy.flush()
            os.fsync(copy.fileno())
        os.replace(partial, spool)
        _sync_directory(spool.parent)

    def append(self, lines: list[str]) -> None:
        """Add ``lines`` (JSON, without newlines); they are on disk (or in the store) when this returns."""
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        if self._handle is not None:
            self._handle.write(data)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        else:
            self._store_part(data)
        self.count += len(lines)

    def _store_part(self, data: bytes) -> None:
        """Write ``data`` as the next part; it is stored when this returns (a half-written part never has its name)."""
        number = int(self._parts[-1].name[len("part-") : -len(".jsonl")]) + 1 if self._parts else 1
        part = self.parts / f"part-{number:06d}.jsonl"
        with atomic_write(part, binary=True) as handle:
            handle.write(data)
        self._parts.append(part)

    def _assemble(self) -> None:
        """The final object: what it held (an earlier finished try), then every part in order; the parts removed."""
        with atomic_write(self.final, binary=True) as handle:
            for source in ([self.final] if self._from_final else []) + self._parts:
                with source.open("rb") as earlier:
                    last = b"\n"
                    while chunk := earlier.read(_CHUNK):
                        handle.write(chunk)
                        last = chunk[-1:]
                    if last != b"\n":
                        handle.write(b"\n")  # a last line without its newline is still a result
        for part in self._parts:
            part.unlink()
        with contextlib.suppress(OSError):  # stores without directories have nothing left to remove
            if self.parts.exists():
                self.parts.rmdir()
        self._parts = []
        self._from_final = True

    def finish(self) -> None:
        """Place the complete file under its final name (an empty one when nothing was written)."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
            os.replace(self.spool, Path(self.final.path))
            _sync_directory(self.spool.parent)
        elif not self.local and (self._parts or not self.final.exists()):
            self._assemble()  # placed even when empty

    def close(self) -> None:
        """Release the spool; after a failure it stays for the retried try."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
