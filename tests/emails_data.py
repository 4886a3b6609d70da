"""Real e-mails for the tests: the CLI's samples (tests/fixtures/emails) and CPython's ``email`` test data.

CPython's ``test/test_email/data`` ships with full Python installations (pyenv builds it); it is
looked for beside the running interpreter's standard library first, then in the other installed
versions. Tests that need it skip, saying why, only when no installation has it.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "emails"
CLI_EML = FIXTURES / "test.eml"
CLI_MSG = FIXTURES / "unicode.msg"
CLI_MSG_ANSI = FIXTURES / "non-unicode.msg"
#: The CLI sample's Message-ID, normalised: the comment id of all three files.
CLI_SAMPLE_ID = "AM9PR02MB66424EB36E9581626499575190DEA@AM9PR02MB6642.eurprd02.prod.outlook.com"

#: CPython's messages that are not e-mails at all (no header before the body).
NOT_EMAILS = frozenset({"msg_19.txt"})


def cpython_email_data() -> Path | None:
    """The folder of CPython's ``email`` test messages, or ``None`` if no installation has it."""
    candidates = [Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"]
    candidates += [
        Path(sys.base_prefix)
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "test"
        / "test_email"
        / "data"
    ]
    home = os.path.expanduser("~/.pyenv/versions")
    candidates += [Path(p) for p in sorted(glob.glob(f"{home}/*/lib/python3*/test/test_email/data"), reverse=True)]
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/python3*/test/test_email/data"), reverse=True)]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("msg_*.txt")):
            return candidate
    return None


def require_cpython_emails() -> Path:
    """The CPython e-mail folder, or skip the test saying why."""
    found = cpython_email_data()
    if found is None:
        pytest.skip(
            "CPython's email test data (test/test_email/data) is not installed beside any Python on this "
            "machine (a distribution's python3 without its test package); install a full CPython, e.g. with pyenv"
        )
    return found


def cpython_messages() -> list[Path]:
    return sorted(require_cpython_emails().glob("msg_*.txt"))


def copy_as_eml(messages: list[Path], folder: Path) -> list[Path]:
    """Copy messages into ``folder`` as ``<name>.eml`` (the gateway's naming); return the copies."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for message in messages:
        target = folder / (message.stem + ".eml")
        shutil.copyfile(message, target)
        copies.append(target)
    return copies
