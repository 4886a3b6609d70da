"""The Python snippets of the README and the docs run as written: no undefined name, no unused import,
and each one executes (operators, DAGs and hook calls are made with the arguments shown, so a renamed
parameter fails here). The how-tos' code is not among them: it is included from the example DAGs,
which the system tier runs."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)]
_BLOCK = re.compile(r"^(?P<indent>[ \t]*)```python\n(?P<code>.*?)^(?P=indent)```", re.M | re.S)


def snippets() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{page.relative_to(ROOT)}:{line}", textwrap.dedent(match.group("code"))))
    return found


def test_the_docs_have_snippets():
    where = {place.split(":")[0] for place, _ in snippets()}
    assert {"docs/hook.md", "docs/howto/export_dataset.md"} <= where, where


@pytest.fixture(scope="module")
def acme(emulator) -> None:
    """The project, source and dataset the snippets name, in the emulator (their calls are real)."""
    from airflow_provider_cm.exceptions import CommunicationsMiningConflictError
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    try:
        hook.create_project("acme")
        source = hook.create_source("acme/inbox", title="Inbox")
        hook.create_dataset("acme/support", source_ids=[source["id"]], title="Support")
    except CommunicationsMiningConflictError:
        pass


@pytest.mark.parametrize(("place", "code"), snippets(), ids=[place for place, _ in snippets()])
def test_snippet_is_clean_and_runs(place, code, acme):
    name = re.sub(r"\W", "_", place)
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F", "--stdin-filename", f"{name}.py"],
        input=code,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, f"{place}: {lint.stdout}"
    exec(compile(code, place, "exec"), {"__name__": f"docs_snippet_{name}"})
