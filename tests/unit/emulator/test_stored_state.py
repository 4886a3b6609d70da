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

from airflow_provider_cm.api.times import parse_time, time_key
from airflow_provider_cm.emulator.state.records import Annotation, Comment, Project
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


def test_a_restart_on_a_recorded_state_reads_every_kind_of_object(restarted: Store):
    """Projects, comments and annotations come back as their records, with what the journal changed."""
    keep, late = restarted.projects["keep"], restarted.projects["late"]
    assert isinstance(keep, Project) and (keep.title, keep.description) == ("Kept", "kept")
    assert keep.updated_at > keep.created_at and (late.title, late.description) == ("", "after the snapshot")
    assert sorted(restarted.projects) == ["keep", "late", "other"]

    source = restarted.source("keep", "inbox")
    assert "c5" not in source.comments and {"c6", "act-20300115-0000", "late-20300115-0001"} <= set(source.comments)
    changed = source.comments["c1"]
    assert isinstance(changed, Comment) and changed.id == "c1" and changed.uid == f"{source.id}.c1"
    assert list(changed.fields) == ["id", "timestamp", "messages", "user_properties"]
    assert changed.fields["user_properties"] == {"string:Channel": "chat"}
    assert changed.fields["messages"][0]["body"]["text"] == "card stolen yesterday"
    assert changed.timestamp_key == time_key(parse_time("2026-10-01T23:00:00Z", "t"))
    assert changed.created_at_key == time_key(parse_time(changed.created_at, "t"))
    assert source.comments["c3"].fields["thread_id"] == "t-3"

    dataset = restarted.dataset("keep", "support")
    annotations = {uid.partition(".")[2]: annotation for uid, annotation in dataset.annotations.items()}
    assert all(isinstance(annotation, Annotation) for annotation in annotations.values())
    assert "c5" not in annotations
    # c1's text changed after it was annotated: its assigned general fields were dropped, its labels kept
    assert annotations["c1"].entities == {"assigned": [], "dismissed": []}
    assert annotations["c1"].assigned_labels() == [{"name": "Card > Stolen", "sentiment": "negative"}]
    assert annotations["c2"].moon_forms == [{"kind": "form"}] and annotations["c2"].entities is None
    assert annotations["c6"].moon_forms == [] and annotations["c6"].annotated()
    assert annotations["c3"].labelling is not None and annotations["c3"].labelling[0]["dismissed"] == [{"name": "Card"}]
    assert [label["metadata"]["user_id"] for label in annotations["c0"].assigned_labels()] == ["emulator-activity"]
    assert sorted(dataset.models) == [1, 2] and dataset.model_tags["live"]["version"] == 2
    assert restarted.billed_by_source == {source.id: restarted.billed_comments}
