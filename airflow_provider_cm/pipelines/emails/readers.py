"""Walk a file or a folder of e-mails (``.eml``, ``.msg``, ``.mbox``) and yield each e-mail's
document or the reason it cannot be one.

Paths are anything ``pathlib``-like (:class:`pathlib.Path`, Airflow's ``ObjectStoragePath``):
``is_dir``, ``rglob``, ``open("rb")``, ``name``. A folder (or an object-storage prefix) is read
recursively, files in the order of their full paths, so two runs read the same e-mails in the
same order. Nothing is skipped without a word: a file of another kind, an empty file, an mbox
without messages and a message that cannot be read each give an :class:`EmailProblem`.
"""

from __future__ import annotations

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
        return sorted((p for p in root.rglob("*") if p.is_file()), key=str)
    if root.exists() or root.is_file():
        return [root]
    raise FileNotFoundError(str(root))


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
                data = handle.read()
        except OSError as exc:
            yield EmailProblem(name, None, f"cannot be read: {exc}")
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
        if os.path.getsize(filename) == 0:
            yield EmailProblem(name, None, "empty: an mbox file with no messages")
            return
        box = mailbox.mbox(filename, create=False)
        try:
            keys = box.keys()
            if not keys:
                yield EmailProblem(name, None, "no messages: an mbox starts each message with a 'From ' line")
                return
            for index, key in enumerate(keys):
                try:
                    yield EmailItem(name, index, parse_eml(box.get_bytes(key), user_properties))
                except EmailError as exc:
                    yield EmailProblem(name, index, str(exc))
                except Exception as exc:
                    yield EmailProblem(name, index, f"cannot be parsed: {type(exc).__name__}: {exc}")
        finally:
            box.close()
