"""Nothing is sent from an invalid file: the upload validates the whole file before the first
request, so a file with one bad record, however late in it, sends no comment and bills nothing.

Real HTTP against the emulator process. Which records are invalid, and how each is said, is the
validator's own unit tests (``tests/unit/upload/test_comment_validation.py``).
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_cm.exceptions import CommunicationsMiningInputError, CommunicationsMiningNotFoundError
from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from tests.conftest import make_record

SYNC = "POST /api/v1/sources/{project}/{name}/sync"
LABELLINGS = "POST /api/_private/datasets/{project}/{name}/labellings/{uid}"


def test_an_invalid_file_sends_nothing_and_bills_nothing(emulator, hook, workspace, tmp_path, context):
    path = tmp_path / "in.jsonl"
    good = [make_record(f"c{i}", "2026-10-01T00:00:00Z", label="A") for i in range(2500)]
    bad = make_record("late", "2026-10-01T00:00:00Z")
    bad["comment"]["messages"][0]["body"]["text_markup"] = {"any": ["JSON", 1]}  # valid: any JSON
    bad["comment"]["messages"][0]["language"] = "far too long"  # invalid: 1 to 8 characters
    lines = [json.dumps(r) for r in [*good, bad, *good[:10]]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    syncs, labellings, billed = emulator.requests_to(SYNC), emulator.requests_to(LABELLINGS), emulator.billed()

    operator = CommunicationsMiningUploadCommentsOperator(
        task_id="upload", source=workspace.source, dataset=workspace.dataset, input_path=str(path), batch_size=100
    )
    with pytest.raises(CommunicationsMiningInputError) as info:
        operator.execute(context)

    assert f"{path}:2501: comment.messages[0].language: " in str(info.value)
    assert emulator.requests_to(SYNC) == syncs, "a sync request went out from an invalid file"
    assert emulator.requests_to(LABELLINGS) == labellings
    assert emulator.billed() == billed
    with pytest.raises(CommunicationsMiningNotFoundError):
        hook.get_comment(workspace.source, "c0")


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real-run"])
def test_a_value_nested_100000_levels_deep_sends_nothing_and_names_the_line(
    emulator, workspace, tmp_path, context, dry_run
):
    """Issue 26: a user property nesting 100,000 arrays, on the second line after a good one, ended the
    upload with a bare ``RecursionError``; it is that line's error, and nothing is sent or billed."""
    from tests.unit.upload.test_malformed_input import deeply_nested_line

    path = tmp_path / "deep.jsonl"
    good = json.dumps(make_record("good", "2026-10-01T00:00:00Z", label="A")).encode()
    path.write_bytes(good + b"\n" + deeply_nested_line(100_000) + b"\n")
    syncs, labellings, billed = emulator.requests_to(SYNC), emulator.requests_to(LABELLINGS), emulator.billed()

    operator = CommunicationsMiningUploadCommentsOperator(
        task_id="upload", source=workspace.source, dataset=workspace.dataset, input_path=str(path), dry_run=dry_run
    )
    with pytest.raises(CommunicationsMiningInputError) as info:
        operator.execute(context)

    assert info.value.problems == [
        (2, "comment.user_properties['string:X']", "is nested too deeply to read (arrays or objects within each "
         "other beyond the JSON reader's limit)")
    ]  # fmt: skip
    assert f"{path}:2: comment.user_properties['string:X']: is nested too deeply" in str(info.value)
    assert emulator.requests_to(SYNC) == syncs, "a sync request went out from an invalid file"
    assert emulator.requests_to(LABELLINGS) == labellings
    assert emulator.billed() == billed
