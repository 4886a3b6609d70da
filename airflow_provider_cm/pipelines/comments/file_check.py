"""Check a whole comment file before anything is sent, spooling its valid records.

The spool is a local temporary file holding each record normalised and already encoded for the
request, so the input is read once and nothing is parsed twice. Repeated ids are found with 8
bytes per id (:class:`~airflow_provider_cm.pipelines.comments.id_hashes.IdHashes`); only if some id hash
repeats is the file read a second time, to name each duplicate with the line of its first
occurrence (keeping only the ids whose hash repeats).

What is sent is what the spool holds, so it is what was checked. A file that changes while it is
read (a producer still writing it, a file replaced or cut short) fails the check, naming the
file, with :class:`~airflow_provider_cm.exceptions.CommunicationsMiningInputChangedError`:
within one pass, the file's size or modification time differ between the start and the end
(where the handle can say them: local files); between two passes, the bytes read differ (a
digest of every byte each pass read).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, Any

from airflow_provider_cm.exceptions import CommunicationsMiningInputChangedError
from airflow_provider_cm.pipelines.comments.comment_files import CommentRecord, raise_for_problems
from airflow_provider_cm.pipelines.comments.comment_validation import TimestampRule
from airflow_provider_cm.pipelines.comments.id_hashes import IdHashes
from airflow_provider_cm.pipelines.comments.spool import SpooledRecord

#: Problems listed in the error for an invalid file (all are counted).
MAX_PROBLEMS_SHOWN = 20

#: What a reader yields: a valid record, or a problem ``(line, field, message)``.
ReadItem = CommentRecord | tuple[int, str, str]


class Problems:
    """Problems found in a file: all counted, the first :data:`MAX_PROBLEMS_SHOWN` kept."""

    def __init__(self) -> None:
        self.shown: list[tuple[int, str, str]] = []
        self.total = 0

    def add(self, problem: tuple[int, str, str]) -> None:
        self.total += 1
        if len(self.shown) < MAX_PROBLEMS_SHOWN:
            self.shown.append(problem)


@dataclass
class CheckedFile:
    """What one pass over the file found.

    :param problems: every problem (the first few kept for the error).
    :param count: comments that passed (spooled only if no problem was found).
    :param annotated: of those, comments that carry annotations (labels, general fields).
    :param audio: of those, records naming an ``audio_path`` (a recording the official CLI
        uploads with the comment; the upload does not).
    """

    problems: Problems = field(default_factory=Problems)
    count: int = 0
    annotated: int = 0
    audio: int = 0


class _Digesting(io.RawIOBase):
    """A binary file that keeps a digest and a count of every byte read through it."""

    def __init__(self, handle: IO[bytes]) -> None:
        super().__init__()
        self.handle = handle
        self.digest = hashlib.blake2b(digest_size=16)
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.handle.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.digest.update(data)
        self.size += size
        return size


@dataclass(frozen=True)
class ReadPass:
    """What one pass read: how many bytes, their digest."""

    size: int
    digest: bytes


def _stat(handle: IO[bytes]) -> tuple[int, int] | None:
    """``(size, modification time in ns)`` of an open file, ``None`` where the handle cannot say (object storage)."""
    try:
        status = os.fstat(handle.fileno())
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None
    return status.st_size, status.st_mtime_ns


def _changed(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str | None:
    if before is None or after is None or before == after:
        return None
    if before[0] != after[0]:
        return f"its size went from {before[0]:,} to {after[0]:,} bytes while one pass read it"
    return "its modification time changed while one pass read it"


def check_and_spool(
    open_file: Callable[[], AbstractContextManager[IO[bytes]]],
    read: Callable[[IO[bytes]], Iterator[ReadItem]],
    spool: IO[bytes],
    *,
    where: str,
    timestamps: TimestampRule,
    allow_duplicate_ids: bool = False,
) -> CheckedFile:
    """Read and check every record, spooling the valid ones; raise listing every invalid record.

    :param open_file: opens the file, in binary mode (called once, or twice when some id hash repeats).
    :param read: the records and problems of an open file
        (:func:`~airflow_provider_cm.pipelines.comments.comment_files.iter_records`).
    :param spool: a binary file the encoded records are written to (emptied before a second pass).
    :param where: the file as the errors should name it.
    :param timestamps: the rule for timestamps without an offset (counts those it read).
    :param allow_duplicate_ids: do not treat a repeated comment id as a problem.
    :return: the counts of the file (nothing invalid in it).
    :raises CommunicationsMiningInputError: listing the problems, if there are any (nothing was
        sent; what was spooled is to be discarded).
    :raises CommunicationsMiningInputChangedError: if the file changed while it was read (nothing
        was sent; what was spooled is to be discarded).
    """
    ids = None if allow_duplicate_ids else IdHashes()
    checked, first = _read_pass(open_file, read, spool, ids, None, where)
    repeated = ids.repeated() if ids is not None else frozenset()
    del ids
    if repeated:
        spool.seek(0)
        spool.truncate()
        timestamps.naive = 0
        checked, second = _read_pass(open_file, read, spool, None, repeated, where)
        if second != first:
            raise CommunicationsMiningInputChangedError(
                where,
                f"the pass that named its duplicate ids read {second.size:,} bytes, other than the "
                f"{first.size:,} bytes the first pass checked"
                if second.size != first.size
                else "the pass that named its duplicate ids read other bytes than the first pass checked",
            )
    raise_for_problems(where, checked.problems.shown, checked.problems.total)
    return checked


def _read_pass(
    open_file: Callable[[], AbstractContextManager[IO[bytes]]],
    read: Callable[[IO[bytes]], Iterator[ReadItem]],
    spool: IO[bytes],
    ids: IdHashes | None,
    repeated: frozenset[int] | None,
    where: str,
) -> tuple[CheckedFile, ReadPass]:
    """One pass over the file (:func:`_one_pass`), through a digest of the bytes read.

    :raises CommunicationsMiningInputChangedError: if the file's size or modification time
        changed during the pass.
    """
    with open_file() as handle:
        before = _stat(handle)
        digesting = _Digesting(handle)
        buffered = io.BufferedReader(digesting, buffer_size=1 << 16)
        checked = _one_pass(lambda: read(buffered), spool, ids, repeated)
        changed = _changed(before, _stat(handle))
    if changed is not None:
        raise CommunicationsMiningInputChangedError(where, changed)
    return checked, ReadPass(digesting.size, digesting.digest.digest())


def _one_pass(
    read: Callable[[], Iterator[ReadItem]],
    spool: IO[bytes],
    ids: IdHashes | None,
    repeated: frozenset[int] | None,
) -> CheckedFile:
    """One pass over the file: check each record, spool it while no problem was found.

    :param ids: where to add each valid record's id hash (first pass), or ``None``.
    :param repeated: id hashes seen more than once (second pass): records with these ids are
        compared exactly, and a later line with the same id is a problem.
    """
    checked = CheckedFile()
    problems = checked.problems
    first_line: dict[str, int] = {}
    write = spool.write
    encode = SpooledRecord.encode
    for item in read():
        if isinstance(item, tuple):
            problems.add(item)
            continue
        if ids is not None:
            ids.add(item.id)
        elif repeated and IdHashes.hash_of(item.id) in repeated:
            seen = first_line.setdefault(item.id, item.line)
            if seen != item.line:
                problems.add((item.line, "comment.id", f"duplicate id {item.id!r} (first on line {seen})"))
                continue
        try:
            encoded = encode(item)
        except (ValueError, RecursionError) as exc:
            problems.add((item.line, "(record)", f"cannot be sent as JSON: {exc}"))
            continue
        checked.count += 1
        checked.annotated += item.has_annotations
        checked.audio += item.audio_path is not None
        if not problems.total:
            write(encoded)
    return checked
