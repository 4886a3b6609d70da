"""The upload's label writes overlap the next batches' ``sync``, and never go before (or without) their
comment's successful ``sync``: the engine against the emulator's app in process, every request recorded."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from typing import Any

import pytest

from airflow_provider_cm.exceptions import CommunicationsMiningServerError
from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from airflow_provider_cm.pipelines.comments.engine import UploadEngine, UploadSettings
from tests.conftest import make_record, write_jsonl
from tests.unit.upload.test_engine import spooled


class Recorder:
    """Wraps a hook's ``sync_comments`` and ``update_annotations``: what was asked, in the order it happened."""

    def __init__(self, hook: Any) -> None:
        self.events: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()
        sync, write = hook.sync_comments, hook.update_annotations

        def sync_comments(source: str, comments: list[bytes], **kwargs: Any) -> Any:
            ids = [json.loads(body)["id"] for body in comments]
            self.add("sync started", ids)
            try:
                answer = sync(source, comments, **kwargs)
            except Exception:
                self.add("sync failed", ids)
                raise
            self.add("synced", ids)
            return answer

        def update_annotations(dataset: str, uid: str, **kwargs: Any) -> Any:
            self.add("label write", [uid.split(".", 1)[1]])
            answer = write(dataset, uid, **kwargs)
            self.add("label written", [uid.split(".", 1)[1]])
            return answer

        hook.sync_comments = sync_comments
        hook.update_annotations = update_annotations

    def add(self, what: str, ids: list[str]) -> None:
        with self.lock:
            self.events.append((what, ids))

    def index(self, what: str, comment_id: str) -> int:
        return next(i for i, (kind, ids) in enumerate(self.events) if kind == what and comment_id in ids)

    def written(self) -> list[str]:
        return [ids[0] for kind, ids in self.events if kind == "label write"]

    def check_every_write_follows_its_sync(self) -> None:
        """Each label write comes after a ``sync`` that stored its comment answered (not after it only started)."""
        stored: set[str] = set()
        for kind, ids in self.events:
            if kind == "synced":
                stored.update(ids)
            elif kind == "label write":
                assert ids[0] in stored, f"label write of {ids[0]} before its comment's sync succeeded"


def engine(hook, workspace, **overrides) -> UploadEngine:
    values: dict[str, Any] = {
        "source": workspace.source,
        "dataset": workspace.dataset,
        "batch_size": 4,
        "max_batch_bytes": 1 << 20,
        "sync_concurrency": 1,
        "annotation_concurrency": 4,
        "max_annotation_concurrency": 8,
        "allow_duplicate_ids": False,
    }
    upload = UploadEngine(
        hook,
        UploadSettings(**{**values, **overrides}),
        logging.getLogger("tests.upload"),
        source_id=workspace.source_id,
        total=12,
    )
    upload.dead_letters.file = io.StringIO()
    return upload


def test_a_batch_s_label_writes_start_once_it_is_stored_and_the_next_batches_sync_meanwhile(hook, workspace, emulator):
    """One ``sync`` in flight, label writes taking half a second: the next two batches are stored while the
    first batch's labels are being written (before, each batch's label writes held its sender)."""
    recorder = Recorder(hook)
    emulator.admin("POST", "faults", {"faults": [{"kind": "latency", "delay": 0.5, "path_contains": "/labellings"}]})
    try:
        upload = engine(hook, workspace)
        upload.run(iter(spooled(12)))
    finally:
        emulator.admin("DELETE", "faults")
    recorder.check_every_write_follows_its_sync()
    assert sorted(recorder.written()) == sorted(f"e{n}" for n in range(12))
    assert (upload.tally.new, upload.tally.annotated) == (12, 12)
    first_written = min(recorder.index("label written", f"e{n}") for n in range(4))
    assert recorder.index("synced", "e4") < first_written and recorder.index("synced", "e8") < first_written


def test_a_comment_the_api_refuses_gets_no_label_write_and_its_batch_mates_theirs(hook, workspace, emulator):
    recorder = Recorder(hook)
    emulator.admin("POST", "faults", {"reject_comment_ids": {"e5": "refused for the test"}})
    try:
        upload = engine(hook, workspace)
        upload.run(iter(spooled(12)))
    finally:
        emulator.admin("DELETE", "faults")
    recorder.check_every_write_follows_its_sync()
    assert sorted(recorder.written()) == sorted(f"e{n}" for n in range(12) if n != 5)
    assert (upload.tally.new, upload.tally.rejected, upload.tally.annotated) == (11, 1, 11)
    assert upload.refused_ids == ["e5"]


def test_a_batch_whose_sync_fails_gets_no_label_write_and_the_batches_stored_keep_theirs(workspace, emulator):
    """The second ``sync`` is refused (503, one attempt): its four comments get no label write, the upload
    fails with that error, and the batches stored (before it, and the one already under way) are labelled."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    once = CommunicationsMiningHook(retry_max_attempts=1)
    recorder = Recorder(once)
    emulator.admin(
        "POST", "faults", {"faults": [{"kind": "status", "status": 503, "path_contains": "/sync", "every": 2}]}
    )
    try:
        upload = engine(once, workspace)
        with pytest.raises(CommunicationsMiningServerError):
            upload.run(iter(spooled(12)))
    finally:
        emulator.admin("DELETE", "faults")
        once.close()
    recorder.check_every_write_follows_its_sync()
    failed = next(ids for kind, ids in recorder.events if kind == "sync failed")
    # Two syncs are in flight at once: the refused one (the second to reach the emulator) is batch 2 or 3.
    assert failed in (["e4", "e5", "e6", "e7"], ["e8", "e9", "e10", "e11"])
    assert not set(failed) & set(recorder.written())
    stored = {i for kind, ids in recorder.events if kind == "synced" for i in ids}
    assert set(recorder.written()) == stored and {"e0", "e1", "e2", "e3"} <= stored
    assert upload.tally.annotated == len(stored)


def test_the_upload_s_last_line_says_the_refusals_it_met_and_the_pace_it_settled_at(
    workspace, emulator, tmp_path, capsys
):
    """Under the emulator's token bucket (30 requests/s, burst 5) the line's refusals are the bucket's own
    count (``sync`` included), and its pace is below the bucket's rate."""
    path = write_jsonl(
        tmp_path / "in.jsonl", [make_record(f"c{n}", "2026-10-01T00:00:00Z", label="Card") for n in range(120)]
    )
    operator = CommunicationsMiningUploadCommentsOperator(
        task_id="upload", source=workspace.source, dataset=workspace.dataset, input_path=str(path), batch_size=40
    )
    emulator.admin("POST", "faults", {"rate_limit": {"requests_per_second": 30, "burst": 5}})
    try:
        result = operator.execute({})
        throttled = emulator.stats()["throttled"]
    finally:
        emulator.admin("DELETE", "faults")
    assert (result["new"], result["annotated"]) == (120, 120)
    out = capsys.readouterr().out
    line = re.search(
        r"Uploaded 120 comments .*; its requests met (\d+) refusals \(HTTP 429/503\); settled at ([\d.]+) ", out
    )
    assert line, out[-3000:]
    refusals, pace = int(line.group(1)), float(line.group(2))
    assert throttled > 0 and refusals == throttled
    assert 0 < pace < 30
