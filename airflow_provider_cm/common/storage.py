"""Where operators read and write files: local paths or any ``ObjectStoragePath`` URI, written atomically."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from airflow.sdk import ObjectStoragePath


def to_storage_path(path: str | os.PathLike[str] | ObjectStoragePath) -> ObjectStoragePath:
    """An :class:`ObjectStoragePath` for a local path (``/data/x.jsonl``) or a URI (``s3://bucket/x.jsonl``).

    :raises ValueError: for an empty path.
    """
    if isinstance(path, ObjectStoragePath):
        return path
    text = os.fspath(path).strip()
    if not text:
        raise ValueError("path must not be empty")
    if "://" not in text:
        text = "file://" + os.path.abspath(os.path.expanduser(text))
    return ObjectStoragePath(text)


def location(path: str | os.PathLike[str] | ObjectStoragePath) -> str:
    """The URI of ``path`` without the Airflow connection it is read with, for Asset URIs and lineage.

    ``s3://aws_default@bucket/key`` (the connection named in the URI) is the object
    ``s3://bucket/key``; a local path is ``file:///absolute/path``.
    """
    parts = urlsplit(str(to_storage_path(path)))
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def path_as_given(path: str | os.PathLike[str] | ObjectStoragePath, target: ObjectStoragePath | None = None) -> str:
    """A path as it goes back to the user (XCom, logs): a local path stays a local path, a URI a URI.

    :param path: what the user gave (the operator's argument).
    :param target: the file actually written, when it differs from ``path`` (e.g. a file placed
        beside the input): it is shown in the form ``path`` was given in.

    A local path is absolute (``~`` expanded), so a downstream task can ``open()`` it; a URI
    (``s3://...``, ``file:///...``) is returned as written.
    """
    given = str(path) if isinstance(path, ObjectStoragePath) else os.fspath(path).strip()
    if "://" in given:
        return str(target) if target is not None else given
    if target is not None:
        return str(target.path)
    return os.path.abspath(os.path.expanduser(given))


@contextlib.contextmanager
def atomic_write(final: ObjectStoragePath, *, binary: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``final`` and move it onto ``final`` only when the block succeeds.

    Readers never see a partial file at ``final``: on any error the temporary file is removed and
    ``final`` keeps its previous content (or stays absent). A missing parent directory is created.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        if binary:
            with temporary.open("wb") as handle:
                yield handle
        else:
            with temporary.open("w", encoding="utf-8", newline="") as handle:
                yield handle
        temporary.rename(final)
    except BaseException:
        with contextlib.suppress(Exception):
            temporary.unlink()
        raise


def shown_under(root: ObjectStoragePath, given: str) -> Callable[[Any], str]:
    """How a file found under ``root`` is named in logs, errors and dead letters: in the form ``root`` was
    given (``given``, from :func:`path_as_given`), so a local folder's files stay local paths."""
    base = str(root).rstrip("/")
    prefix = given.rstrip("/")

    def shown(path: Any) -> str:
        text = str(path)
        if text == base:
            return given
        if text.startswith(base + "/"):
            return prefix + text[len(base) :]
        return text

    return shown
