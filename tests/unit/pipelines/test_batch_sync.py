"""The batch-sync loop on its own: records, a request callable over the hook, the emulator's app in process."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

import pytest

from airflow_provider_cm.exceptions import CommunicationsMiningApiError, CommunicationsMiningProtocolError
from airflow_provider_cm.pipelines.batch_sync import BatchSync, DeadLetters, batches

ROUTE = "POST /api/v1/sources/{project}/{name}/sync"


@dataclass
class Record:
    id: str
    payload: bytes


def records(count: int, prefix: str = "r") -> list[Record]:
    return [
        Record(
            f"{prefix}{n}",
            json.dumps(
                {"id": f"{prefix}{n}", "timestamp": "2026-10-01T00:00:00Z", "messages": [{"body": {"text": f"t {n}"}}]}
            ).encode(),
        )
        for n in range(count)
    ]


def loop(hook, workspace, total: int, *, batch_size: int = 10, concurrency: int = 1, **kwargs) -> BatchSync[Record]:
    letters = DeadLetters(io.StringIO(), logging.getLogger("tests.batch_sync"))

    def refused(record: Record, error: CommunicationsMiningApiError) -> None:
        letters.write({"id": record.id, "error": error.message}, "refused %s", record.id)

    sync: BatchSync[Record] = BatchSync(
        lambda bodies: hook.sync_comments(workspace.source, bodies),
        batch_size=batch_size,
        max_batch_bytes=kwargs.pop("max_batch_bytes", 1 << 20),
        concurrency=concurrency,
        log=logging.getLogger("tests.batch_sync"),
        noun="comments",
        total=total,
        on_refused=refused,
        **kwargs,
    )
    sync.letters = letters  # type: ignore[attr-defined]
    return sync


def test_batches_close_at_the_count_or_the_bytes_whichever_comes_first():
    items = [Record(str(n), b"x" * 9) for n in range(7)]  # 10 bytes each, with the separator
    assert [len(b) for b in batches(items, 3, 1 << 20)] == [3, 3, 1]
    assert [len(b) for b in batches(items, 100, 20)] == [2, 2, 2, 1]
    assert [len(b) for b in batches(items, 100, 1)] == [1] * 7
    assert list(batches([], 3, 10)) == []


def test_a_refused_batch_is_bisected_down_to_the_records_the_api_refuses(hook, workspace, emulator, caplog):
    emulator.admin("POST", "faults", {"reject_comment_ids": {"r3": "bad comment", "r6": "bad too"}})
    calls = emulator.requests_to(ROUTE)
    try:
        with caplog.at_level(logging.INFO, logger="tests.batch_sync"):
            sync = loop(hook, workspace, 8)
            sync.run(records(8))
    finally:
        emulator.admin("DELETE", "faults")
    assert [record.id for record in sync.refused] == ["r3", "r6"]
    assert (sync.tally.new, sync.tally.rejected, sync.done) == (6, 2, 8)
    # 8 -> 4+4 -> (2+2)+(2+2) -> the two refused pairs split into singles: 1 + 2 + 4 + 4 requests
    assert emulator.requests_to(ROUTE) - calls == 11
    letters = [json.loads(line) for line in sync.letters.file.getvalue().splitlines()]  # type: ignore[attr-defined]
    assert letters == [{"id": "r3", "error": letters[0]["error"]}, {"id": "r6", "error": letters[1]["error"]}]
    assert "bad comment" in letters[0]["error"] and sync.letters.count == 2  # type: ignore[attr-defined]
    for stored in ("r0", "r2", "r4", "r5", "r7"):
        assert hook.get_comment(workspace.source, stored)["id"] == stored
    assert "The API refused a batch of 8 comments (" in caplog.text and "bisecting" in caplog.text
    assert "Progress: 8 of 8 comments (100%): new=6 updated=0 unchanged=0 rejected=2" in caplog.text


def test_a_lost_answer_keeps_what_is_known_and_makes_its_batch_a_range(workspace, emulator, caplog):
    """The second request runs on the server but its answer is cut: its 2 comments may be billed."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    once = CommunicationsMiningHook(retry_max_attempts=1)
    billed = emulator.billed()
    emulator.admin("POST", "faults", {"faults": [{"kind": "truncate", "path_contains": "/sync", "every": 2}]})
    try:
        sync = loop(once, workspace, 4, batch_size=2)
        with caplog.at_level(logging.INFO, logger="tests.batch_sync"), pytest.raises(CommunicationsMiningProtocolError):
            sync.run(records(4))
    finally:
        emulator.admin("DELETE", "faults")
        once.close()
    assert emulator.billed() - billed == 4  # the lost request was carried out
    tally = sync.tally
    assert (tally.new, tally.done, sync.done) == (2, 2, 2)  # known: the first batch only
    assert (tally.billed_at_least, tally.billed_at_most, tally.reasons) == (2, 4, {"failed": 2})
    assert tally.why == ["a sync request failed after it may have reached the server (2 comment(s))"]
    assert "Progress: 2 of 4 comments (50%)" in caplog.text and "between 2 and 4 billed" in caplog.text


def test_an_answer_lost_then_retried_reports_its_unchanged_comments_as_possibly_billed(workspace, emulator):
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    twice = CommunicationsMiningHook(retry_max_attempts=2)
    emulator.admin("POST", "faults", {"faults": [{"kind": "truncate", "path_contains": "/sync", "count": 1}]})
    try:
        sync = loop(twice, workspace, 4, batch_size=4)
        sync.run(records(4))
    finally:
        emulator.admin("DELETE", "faults")
        twice.close()
    tally = sync.tally
    assert (tally.new, tally.unchanged, sync.done) == (0, 4, 4)  # the retry found them stored
    assert (tally.billed_at_least, tally.billed_at_most, tally.reasons) == (0, 4, {"retried": 4})


def test_after_sync_sees_each_batch_with_its_own_counts_before_they_join_the_runs(hook, workspace, emulator):
    seen: list[tuple[list[str], int, int]] = []

    def after(stored: list[Record], tally) -> None:
        seen.append(([r.id for r in stored], tally.new, tally.rejected))
        tally.annotated += len(stored)

    emulator.admin("POST", "faults", {"reject_comment_ids": {"a1": "no"}})
    try:
        sync = loop(hook, workspace, 5, batch_size=3, after_sync=after)
        sync.run(records(5, prefix="a"))
    finally:
        emulator.admin("DELETE", "faults")
    assert seen == [(["a0", "a2"], 2, 1), (["a3", "a4"], 2, 0)]
    assert (sync.tally.new, sync.tally.rejected, sync.tally.annotated) == (4, 1, 4)


def test_the_dead_letter_writer_needs_its_file():
    with pytest.raises(RuntimeError, match="not opened"):
        DeadLetters().write({"id": "x"}, "refused")
