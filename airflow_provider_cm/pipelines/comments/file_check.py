"""Check a whole comment file before anything is sent, spooling its valid records.

The spool is a local temporary file holding each record normalised and already encoded for the
request, so the input is read once and nothing is parsed twice. Repeated ids are found with 8
bytes per id (:class:`~airflow_provider_cm.pipelines.comments.id_hashes.IdHashes`); only if some id hash
repeats is the file read a second time, to name each duplicate with the line of its first
occurrence (keeping only the ids whose hash repeats).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

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


def check_and_spool(
    read: Callable[[], Iterator[ReadItem]],
    spool: IO[bytes],
    *,
    where: str,
    timestamps: TimestampRule,
    allow_duplicate_ids: bool = False,
) -> CheckedFile:
    """Read and check every record, spooling the valid ones; raise listing every invalid record.

    :param read: opens the file and yields its records and problems (called once, or twice when
        some id hash repeats).
    :param spool: a binary file the encoded records are written to (emptied before a second pass).
    :param where: the file as the error should name it.
    :param timestamps: the rule for timestamps without an offset (counts those it read).
    :param allow_duplicate_ids: do not treat a repeated comment id as a problem.
    :return: the counts of the file (nothing invalid in it).
    :raises CommunicationsMiningInputError: listing the problems, if there are any (nothing was
        sent; what was spooled is to be discarded).
    """
    ids = None if allow_duplicate_ids else IdHashes()
    checked = _one_pass(read, spool, ids, None)
    repeated = ids.repeated() if ids is not None else frozenset()
    del ids
    if repeated:
        spool.seek(0)
        spool.truncate()
        timestamps.naive = 0
        checked = _one_pass(read, spool, None, repeated)
    raise_for_problems(where, checked.problems.shown, checked.problems.total)
    return checked


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
