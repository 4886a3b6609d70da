"""Exports in concurrent time slices, over real HTTP against the emulator.

A sliced export must write the very file a serial export (one ``continuation`` chain) writes, byte
for byte: on BANKING77, and on data made to break a careless merge (many comments sharing a time,
comments on every microsecond so that slice edges fall on them, empty slices, a window holding one
comment). A failing slice fails the task, names the slice, stops the other slices and leaves no
file, temporary or not.
"""

from __future__ import annotations

import filecmp
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cm.api.times import api_time
from airflow_provider_cm.client import window_export
from airflow_provider_cm.client.export_slices import SlicedExport
from airflow_provider_cm.exceptions import CommunicationsMiningBadRequestError
from airflow_provider_cm.hooks.window_export import WindowExport
from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator
from tests.conftest import BANKING77_JSONL, make_record, new_workspace, read_jsonl, write_jsonl

UTC = timezone.utc
EXPORT_ROUTE = "POST /api/v1/datasets/{project}/{name}/export"
#: Many comments sharing one time, and comments on consecutive microseconds, three per microsecond.
TIES_AT = "2026-10-05T06:00:00.000000Z"
DENSE_FROM = datetime(2026, 10, 5, 12, tzinfo=UTC)
#: The one comment of its day.
LONE = "2026-10-07T09:30:00.123456Z"

WINDOWS = {
    "banking77": ("2026-10-01T00:00:00Z", "2026-10-04T00:00:00Z"),
    "adversarial": ("2026-10-05T00:00:00Z", "2026-10-06T00:00:00Z"),
    "from-the-ties": (TIES_AT, "2026-10-05T12:00:00.000150Z"),  # starts on the ties, ends inside the dense run
    "one-comment": ("2026-10-07T00:00:00Z", "2026-10-08T00:00:00Z"),
    "empty": ("2026-10-09T00:00:00Z", "2026-10-10T00:00:00Z"),
    "everything": ("2026-09-30T00:00:00Z", "2026-10-08T00:00:00Z"),
}


def adversarial_records() -> list[dict[str, Any]]:
    records = [make_record(f"tie-{i:02d}", TIES_AT, f"same time {i}", "Card > Lost") for i in range(40)]
    for step in range(300):
        moment = api_time(DENSE_FROM + timedelta(microseconds=step))
        records += [make_record(f"dense-{step:03d}-{k}", moment, f"dense {step} {k}") for k in "abc"]
    records.append(make_record("on-start", "2026-10-05T00:00:00Z", "on the window start"))
    records.append(make_record("on-end", "2026-10-06T00:00:00Z", "on the window end: the next day's"))
    records.append(make_record("lone", LONE, "alone in its day", "Card > Lost"))
    return records


@pytest.fixture(scope="module")
def dataset(emulator, tmp_path_factory) -> str:
    """Three days of BANKING77 (with labels) and the adversarial comments, in one dataset."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    workspace = new_workspace(hook)
    hook.close()
    days = ("2026-10-01", "2026-10-02", "2026-10-03")
    records = [r for r in read_jsonl(BANKING77_JSONL) if r["comment"]["timestamp"][:10] in days]
    records += adversarial_records()
    path = write_jsonl(tmp_path_factory.mktemp("sliced") / "records.jsonl", records)
    CommunicationsMiningUploadCommentsOperator(
        task_id="upload", source=workspace.source, dataset=workspace.dataset, input_path=str(path)
    ).execute({})
    return workspace.dataset


class RecordingSlicedExport(SlicedExport):
    """The hook's sliced export, remembered so a test can look at the slices it cut."""

    made: list[SlicedExport] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        RecordingSlicedExport.made.append(self)


@pytest.fixture
def recorded(monkeypatch) -> list[SlicedExport]:
    RecordingSlicedExport.made = []
    monkeypatch.setattr(window_export, "SlicedExport", RecordingSlicedExport)
    return RecordingSlicedExport.made


@pytest.fixture
def spool_dir(tmp_path, monkeypatch) -> Path:
    """Where the slices' temporary files go during the test."""
    directory = tmp_path / "spool"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def export(dataset: str, path: Path, window: tuple[str, str], **kwargs: Any) -> dict[str, Any]:
    return CommunicationsMiningExportDatasetOperator(
        task_id="export", dataset=dataset, output_path=str(path), start=window[0], end=window[1], **kwargs
    ).execute({})


@pytest.mark.parametrize("output_format", ["jsonl", "csv"])
@pytest.mark.parametrize("name", list(WINDOWS))
def test_a_sliced_export_writes_the_serial_exports_file_byte_for_byte(
    dataset, tmp_path, recorded, spool_dir, name, output_format
):
    window = WINDOWS[name]
    serial_path, sliced_path = tmp_path / f"serial.{output_format}", tmp_path / f"sliced.{output_format}"
    serial = export(dataset, serial_path, window, output_format=output_format, page_size=16, export_concurrency=1)
    assert recorded == []  # one chain: no slices
    sliced = export(dataset, sliced_path, window, output_format=output_format, page_size=16, export_concurrency=8)

    assert sliced["count"] == serial["count"]
    assert filecmp.cmp(serial_path, sliced_path, shallow=False)
    expected = {"banking77": 900, "adversarial": 941, "one-comment": 1, "empty": 0}
    if name in expected:
        assert serial["count"] == expected[name] if name != "banking77" else serial["count"] > expected[name]
    [made] = recorded
    if serial["count"] > 16:  # more than a page: the window was cut
        assert len(made.slices) > 1
    assert list(spool_dir.iterdir()) == []


def test_slice_edges_fall_on_ties_and_empty_slices_are_kept_in_order(dataset, hook, recorded, spool_dir):
    """The adversarial day with small pages: edges land on microseconds that hold three comments each."""
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in WINDOWS["adversarial"])
    serial = [c for page in WindowExport(hook, dataset, start, end, page_size=4) for c in page]
    sliced = [c for page in WindowExport(hook, dataset, start, end, page_size=4, concurrency=8) for c in page]
    assert [c["comment"]["uid"] for c in sliced] == [c["comment"]["uid"] for c in serial]
    assert sliced == serial and len(serial) == 941

    [made] = recorded
    times = {c["comment"]["timestamp"] for c in serial}
    edges = [api_time(piece.start) for piece in made.slices[1:]]
    assert [piece.start for piece in made.slices[1:]] == [piece.end for piece in made.slices[:-1]]  # contiguous
    assert made.slices[0].start == start and made.slices[-1].end == end
    on_comments = [edge for edge in edges if edge in times]
    assert on_comments, f"no slice edge fell on a comment's time: {edges}"
    assert any(piece.comments == 0 for piece in made.slices), "no slice was empty"
    assert sum(piece.comments for piece in made.slices) == len(serial)


def test_by_upload_time_thousands_of_ties_come_in_the_serial_order(dataset, hook, recorded):
    """Comments uploaded in one ``sync`` request share their ``created_at``: slices cut around them."""
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    serial = [c for p in WindowExport(hook, dataset, start, end, order_by="created_at", page_size=64) for c in p]
    sliced = [
        c
        for p in WindowExport(hook, dataset, start, end, order_by="created_at", page_size=64, concurrency=8)
        for c in p
    ]
    assert len({c["comment"]["created_at"] for c in serial}) < len(serial) / 10  # mostly ties
    assert [c["comment"]["uid"] for c in sliced] == [c["comment"]["uid"] for c in serial]
    assert sliced == serial
    [made] = recorded
    assert len(made.slices) > 1


def test_a_window_that_fits_one_page_costs_one_request(dataset, hook, emulator, recorded):
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in WINDOWS["one-comment"])
    before = emulator.requests_to(EXPORT_ROUTE)
    pages = list(WindowExport(hook, dataset, start, end, concurrency=8))
    assert [[c["comment"]["id"] for c in page] for page in pages] == [["lone"]]
    assert emulator.requests_to(EXPORT_ROUTE) - before == 1


def test_concurrency_one_is_the_serial_chain(dataset, hook, emulator, recorded):
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in WINDOWS["banking77"])
    before = emulator.requests_to(EXPORT_ROUTE)
    pages = list(WindowExport(hook, dataset, start, end, page_size=100, concurrency=1))
    chain = list(hook.iter_export_pages(dataset, start=api_time(start), end=api_time(end), limit=100))
    assert pages == chain  # no comment of these days sits exactly on `end`
    assert emulator.requests_to(EXPORT_ROUTE) - before == 2 * len(chain)
    assert recorded == []


def test_a_failing_slice_fails_the_task_names_the_slice_stops_the_rest_and_leaves_no_file(
    dataset, emulator, tmp_path, spool_dir, recorded
):
    target = tmp_path / "out" / "export.jsonl"
    project = dataset.split("/")[0]
    before = emulator.requests_to(EXPORT_ROUTE)
    # Every sixth export request of this project is refused: some slices have written pages by then.
    emulator.admin(
        "POST",
        "faults",
        {"faults": [{"kind": "status", "status": 400, "path_contains": f"/datasets/{project}/", "every": 6}]},
    )
    try:
        with pytest.raises(
            CommunicationsMiningBadRequestError,
            match=r"\(export slice \[2026-\d\d-\d\dT[0-9:.]+Z, 2026-\d\d-\d\dT[0-9:.]+Z\)\)",
        ) as failure:
            export(dataset, target, WINDOWS["everything"], page_size=16, export_concurrency=8)
    finally:
        emulator.admin("DELETE", "faults")
    assert failure.value.status_code == 400 and "/export" in failure.value.route
    sent = emulator.requests_to(EXPORT_ROUTE) - before
    time.sleep(0.5)
    assert emulator.requests_to(EXPORT_ROUTE) - before == sent  # the other slices stopped
    assert sent < 1900 / 16  # fewer than the export's pages
    [made] = recorded
    assert len(made.slices) > 1 and any(piece.comments for piece in made.slices)
    assert not target.exists() and list(target.parent.iterdir()) == []
    assert list(spool_dir.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("cm-export-")]


def test_stopping_early_stops_the_slices_and_deletes_their_files(dataset, hook, recorded, spool_dir):
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in WINDOWS["everything"])
    pages = iter(WindowExport(hook, dataset, start, end, page_size=8, concurrency=4))
    first = next(pages)
    assert first and list(spool_dir.iterdir())  # the slices spool ahead of the reader
    pages.close()
    assert list(spool_dir.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("cm-export-")]


@pytest.mark.parametrize("concurrency", [0, 65, 2.5, True])
def test_a_bad_concurrency_is_refused_when_the_dag_is_parsed(dataset, tmp_path, concurrency):
    with pytest.raises(ValueError, match="concurrency"):
        CommunicationsMiningExportDatasetOperator(
            task_id="export", dataset=dataset, output_path=str(tmp_path / "x"), export_concurrency=concurrency
        )


def test_the_hook_pool_fits_the_slices(dataset, tmp_path):
    operator = CommunicationsMiningExportDatasetOperator(
        task_id="export", dataset=dataset, output_path=str(tmp_path / "x"), export_concurrency=32
    )
    assert operator.hook.pool_size == 32


def test_under_a_rate_limit_the_slices_are_paced_and_the_export_is_still_exact(dataset, hook, emulator, capfd):
    """Eight slices against 20 requests/s (burst 5): refused a few times, then paced below the limit."""
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in WINDOWS["banking77"])
    serial = [c for page in WindowExport(hook, dataset, start, end, page_size=50) for c in page]
    emulator.admin("POST", "faults", {"rate_limit": {"requests_per_second": 20, "burst": 5}})
    capfd.readouterr()
    try:
        sliced = [c for page in WindowExport(hook, dataset, start, end, page_size=50, concurrency=8) for c in page]
        refusals = emulator.stats()["throttled"]
    finally:
        emulator.admin("DELETE", "faults")
    logged = capfd.readouterr()
    assert sliced == serial
    paced = [line for line in (logged.out + logged.err).splitlines() if "Export slices: met" in line]
    assert refusals >= 1 and len(paced) == 1, (refusals, paced)
    assert f"met {refusals} refusals (HTTP 429/503); settled at" in paced[0], paced[0]
