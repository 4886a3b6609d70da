"""A snapshot and journal the emulator wrote before still load, into the same objects and answers.

The state in ``tests/fixtures/emulator_state`` was written by the emulator of 0.2.0 (commit 8694956,
:mod:`tests.fixtures.emulator_state.record`): a snapshot, then a journal of changes and deletions of
every kind of object. Restarted on a copy, today's emulator must answer every read with the same
bytes that emulator answered, and compact the journal into the same snapshot.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cm.emulator.state.store import Store
from tests.fixtures.emulator_state.record import reader

FIXTURE = Path(__file__).parents[2] / "fixtures" / "emulator_state"


@pytest.fixture
def restarted(tmp_path: Path) -> Iterator[Store]:
    """An emulator's store started on a copy of the recorded snapshot and journal."""
    for name in ("state.json", "state.json.journal"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    store = Store(str(tmp_path / "state.json"))
    yield store
    store.close()


def _recorded() -> list[list[Any]]:
    return json.loads((FIXTURE / "answers.json").read_text(encoding="utf-8"))


def test_the_recorded_state_holds_every_kind_of_change():
    """The fixture is what it claims: the journal puts and deletes every kind of object."""
    lines = (FIXTURE / "state.json.journal").read_text(encoding="utf-8").splitlines()
    puts = [put for line in lines for put in json.loads(line)["puts"]]
    kinds = {"project", "source", "comment", "dataset", "annotation", "stream", "model", "tags"}
    assert {put[0] for put in puts} == kinds
    assert {put[0] for put in puts if put[-1] is None} == {"comment", "annotation", "dataset", "stream"}


def test_a_restart_on_a_recorded_state_answers_the_same_bytes(restarted: Store):
    read = reader(restarted)
    for method, path, body, status, text in _recorded():
        assert read(method, path, body) == (status, text), f"{method} {path} {body}"


def test_a_restart_on_a_recorded_state_compacts_it_into_the_same_snapshot(restarted: Store):
    assert restarted.state_path is not None
    written = json.loads(Path(restarted.state_path).read_text(encoding="utf-8"))
    assert written == json.loads((FIXTURE / "recovered.json").read_text(encoding="utf-8"))
    assert Path(restarted.state_path + ".journal").stat().st_size == 0
