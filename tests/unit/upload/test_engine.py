"""The upload engine on its own: a hook, its settings and a logger, no operator and no task context."""

from __future__ import annotations

import io
import json
import logging

import pytest
from airflow.exceptions import AirflowProviderDeprecationWarning

from airflow_provider_cm.pipelines.comments.comment_files import CommentRecord
from airflow_provider_cm.pipelines.comments.engine import UploadEngine, UploadSettings
from airflow_provider_cm.pipelines.comments.spool import SpooledRecord


def settings(workspace, **overrides) -> UploadSettings:
    values = {
        "source": workspace.source,
        "dataset": workspace.dataset,
        "batch_size": 2,
        "max_batch_bytes": 1 << 20,
        "sync_concurrency": 2,
        "annotation_concurrency": 4,
        "max_annotation_concurrency": 8,
        "allow_duplicate_ids": False,
    }
    return UploadSettings(**{**values, **overrides})


def spooled(count: int) -> list[SpooledRecord]:
    records = [
        CommentRecord(
            line=n + 1,
            comment={
                "id": f"e{n}",
                "timestamp": f"2026-10-01T00:00:{n:02d}Z",
                "messages": [{"body": {"text": f"card {n} lost"}}],
            },
            labelling=[{"assigned": [{"name": ["Card", "Lost"]}]}],
        )
        for n in range(count)
    ]
    return [SpooledRecord.decode(SpooledRecord.encode(record)) for record in records]


def run(hook, workspace, records: list[SpooledRecord]) -> UploadEngine:
    engine = UploadEngine(
        hook, settings(workspace), logging.getLogger("tests.upload"), source_id=workspace.source_id, total=len(records)
    )
    engine.dead_letters.file = io.StringIO()
    engine.run(iter(records))
    return engine


def test_the_engine_uploads_and_labels_then_a_rerun_changes_nothing(hook, workspace, emulator):
    billed = emulator.billed()
    first = run(hook, workspace, spooled(5))
    assert (first.tally.new, first.tally.annotated, first.tally.rejected) == (5, 5, 0)
    assert emulator.billed() - billed == 5

    again = run(hook, workspace, spooled(5))
    assert (again.tally.unchanged, again.tally.annotated, again.tally.annotations_unchanged) == (5, 0, 5)
    assert emulator.billed() - billed == 5  # nothing billed twice


def test_a_refused_comment_is_dead_lettered_with_its_line_and_the_rest_arrive(hook, workspace, emulator):
    emulator.admin("POST", "faults", {"reject_comment_ids": {"e3": "bad comment"}})
    try:
        engine = run(hook, workspace, spooled(6))
    finally:
        emulator.admin("DELETE", "faults")
    assert (engine.tally.new, engine.tally.rejected, engine.dead_lettered) == (5, 1, 1)
    assert engine.refused_ids == ["e3"]
    entry = json.loads(engine.dead_letters.file.getvalue())
    assert (entry["line"], entry["id"], entry["stage"], entry["stored"]) == (4, "e3", "sync", False)


def test_xcom_carries_the_deprecated_label_keys_with_the_annotation_counts():
    """0.1's ``labelled``/``labels_unchanged``/``labels_rejected`` stay for one release, equal to the new keys."""
    from airflow_provider_cm.exceptions import CommunicationsMiningRejectedRecordsError
    from airflow_provider_cm.pipelines.comments.upload_tally import DEPRECATED_XCOM_KEYS, UploadTally

    tally = UploadTally(annotated=3, annotations_unchanged=2, annotations_rejected=1)
    xcom = tally.as_xcom()
    assert (xcom["annotated"], xcom["annotations_unchanged"], xcom["annotations_rejected"]) == (3, 2, 1)
    assert {old: xcom[old] for old in DEPRECATED_XCOM_KEYS} == {
        "labelled": 3,
        "labels_unchanged": 2,
        "labels_rejected": 1,
    }
    assert "annotated=3 annotations_unchanged=2 annotations_rejected=1" in tally.summary()

    error = CommunicationsMiningRejectedRecordsError("dead.jsonl", ["a"], ["b", "c"])
    assert (error.annotations_rejected, error.unannotated_ids) == (2, ["b", "c"])
    with pytest.warns(AirflowProviderDeprecationWarning, match=r"labels_rejected is deprecated .*annotations_rejected"):
        assert error.labels_rejected == 2
    with pytest.warns(AirflowProviderDeprecationWarning, match=r"unlabelled_ids is deprecated .*unannotated_ids"):
        assert error.unlabelled_ids == ["b", "c"]
    assert "refused their annotations" in str(error)


def test_the_provider_s_own_deprecation_warnings_are_errors_in_the_test_suite():
    """pyproject's filterwarnings turns the provider's deprecations into errors: a test that uses one unawares fails."""
    from airflow_provider_cm.exceptions import CommunicationsMiningRejectedRecordsError

    error = CommunicationsMiningRejectedRecordsError("dead.jsonl", [], ["b"])
    with pytest.raises(AirflowProviderDeprecationWarning, match="deprecated since airflow-provider-cm"):
        error.unlabelled_ids  # noqa: B018 - the property's warning is the subject
