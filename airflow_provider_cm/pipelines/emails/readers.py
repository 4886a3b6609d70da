"""Walk a file or a folder of e-mails (``.eml``, ``.msg``, ``.mbox``) and yield each e-mail's
document or the reason it cannot be one.

Paths are anything ``pathlib``-like (:class:`pathlib.Path`, Airflow's ``ObjectStoragePath``):
``is_dir``, ``rglob``, ``open("rb")``, ``name``. A folder (or an object-storage prefix) is read
recursively, files in the order of their full paths, so two runs read the same e-mails in the
same order. Nothing is skipped without a word: a file of another kind, an empty file, a link to
nothing, an mbox without messages, a message that cannot be read (whatever the parser raises)
and a file that changes while it is read each give an :class:`EmailProblem`.

A local file that changes while it is read (its size, modification time or inode differ between
before and after: a mail delivery agent appending to an mbox, a gateway still writing an
``.eml``) gives no document from what was read after the change: an ``.eml`` or ``.msg`` file is
one problem, an mbox's messages read before the change are kept and the rest are one problem
for the file. What is checked and sent is always the bytes read.
"""

from __future__ import annotations

import io
import mailbox
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_cm.pipelines.emails.documents import EmailError, ParsedEmail, parse_eml, parse_msg

#: The file kinds read, by extension (lower case).
EMAIL_SUFFIXES = (".eml", ".msg", ".mbox")


@dataclass
class EmailProblem:
    """An input that gives no document: the file, the message's 0-based index in it (``None``
    for the file as a whole) and why."""

    file: str
    index: int | None
    reason: str


@dataclass
class EmailItem:
    """One e-mail read: where from (file, 0-based index of the message in it) and its document."""

    file: str
    index: int
    email: ParsedEmail


def email_files(root: Any) -> list[Any]:
    """The files under ``root`` (itself if it is a file), sorted by their full paths.

    :raises FileNotFoundError: if ``root`` does not exist.
    """
    if root.is_dir():
        return sorted((p for p in root.rglob("*") if p.is_file() or _is_broken_link(p)), key=str)
    if root.exists() or root.is_file():
        return [root]
    raise FileNotFoundError(str(root))


def _is_broken_link(path: Any) -> bool:
    """A symbolic link to nothing (listed, so that reading it says so); ``False`` where paths have no links."""
    try:
        return bool(path.is_symlink()) and not path.exists()
    except (OSError, NotImplementedError, AttributeError):
        return False


FileState = tuple[int, int, int]


def _state(handle_or_name: Any) -> FileState | None:
    """``(size, modification time in ns, inode)`` of a local file (an open handle or a name);
    ``None`` where it cannot be had (object storage)."""
    try:
        status = os.stat(handle_or_name) if isinstance(handle_or_name, str) else os.fstat(handle_or_name.fileno())
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None
    return status.st_size, status.st_mtime_ns, status.st_ino


def _change(before: FileState | None, after: FileState | None) -> str | None:
    """What differs between two states of a file, ``None`` if nothing (or either is unknown)."""
    if before is None or after is None or before == after:
        return None
    if before[2] != after[2]:
        return "changed while it was read (it was replaced)"
    if before[0] != after[0]:
        return f"changed while it was read (its size went from {before[0]:,} to {after[0]:,} bytes)"
    return "changed while it was read (its modification time changed)"


def iter_emails(
    files: list[Any],
    user_properties: Mapping[str, Any] | None = None,
    shown: Callable[[Any], str] = str,
) -> Iterator[EmailItem | EmailProblem]:
    """Each e-mail of ``files`` (from :func:`email_files`), or the problem in its place.

    :param shown: how a file is named in the results (e.g. as the user gave the folder).
    """
    for path in files:
        name = shown(path)
        suffix = os.path.splitext(path.name)[1].lower()
        if suffix not in EMAIL_SUFFIXES:
            yield EmailProblem(name, None, f"not an e-mail file: the name does not end in {', '.join(EMAIL_SUFFIXES)}")
            continue
        try:
            if suffix == ".mbox":
                yield from _mbox(path, name, user_properties)
                continue
            with path.open("rb") as handle:
                before = _state(handle)
                data = handle.read()
                changed = _change(before, _state(handle))
        except OSError as exc:
            yield EmailProblem(name, None, f"cannot be read: {exc}")
            continue
        if changed is not None:
            yield EmailProblem(name, None, f"{changed}: not read; upload it again once nothing writes to it")
            continue
        parse = parse_msg if suffix == ".msg" else parse_eml
        try:
            yield EmailItem(name, 0, parse(data, user_properties))
        except EmailError as exc:
            yield EmailProblem(name, 0, str(exc))
        except Exception as exc:  # the parser's own bug on a strange input: said, never a traceback
            yield EmailProblem(name, 0, f"cannot be parsed: {type(exc).__name__}: {exc}")


def _mbox(path: Any, name: str, user_properties: Mapping[str, Any] | None) -> Iterator[EmailItem | EmailProblem]:
    """The messages of an mbox file; ``mailbox`` needs a local file, so a remote one is copied first."""
    local = getattr(path, "protocol", "file") in ("file", "local") and os.path.exists(str(getattr(path, "path", path)))
    with tempfile.TemporaryDirectory(prefix="cm-mbox-") as scratch:
        if local:
            filename = str(getattr(path, "path", path))
        else:
            filename = os.path.join(scratch, "copy.mbox")
            with path.open("rb") as source, open(filename, "wb") as target:
                shutil.copyfileobj(source, target)
        before = _state(filename) if local else None
        if os.path.getsize(filename) == 0:
            yield EmailProblem(name, None, "empty: an mbox file with no messages")
            return
        try:
            box = mailbox.mbox(filename, create=False)
            keys = box.keys()
        except OSError:
            raise
        except Exception as exc:  # the mailbox module's own gap on a strange file: said, never a traceback
            yield EmailProblem(name, None, f"cannot be read as an mbox: {type(exc).__name__}: {exc}")
            return
        try:
            if not keys:
                yield EmailProblem(name, None, "no messages: an mbox starts each message with a 'From ' line")
                return
            for index, key in enumerate(keys):
                try:
                    data = box.get_bytes(key)
                except OSError:
                    raise
                except Exception as exc:
                    yield EmailProblem(name, index, f"cannot be read: {type(exc).__name__}: {exc}")
                    continue
                changed = _change(before, _state(filename)) if local else None
                if changed is not None:
                    yield EmailProblem(
                        name,
                        None,
                        f"{changed}: its first {index} of {len(keys)} messages were read, the others were not; "
                        "upload it again once nothing writes to it",
                    )
                    return
                try:
                    yield EmailItem(name, index, parse_eml(data, user_properties))
                except EmailError as exc:
                    yield EmailProblem(name, index, str(exc))
                except Exception as exc:
                    yield EmailProblem(name, index, f"cannot be parsed: {type(exc).__name__}: {exc}")
        finally:
            box.close()
