"""A tenant built from real data (BANKING77) for the warehouse tests: comments, labels, a model.

The comments are the first ``count`` lines of ``../shared/data/banking77/comments.jsonl`` (real
customer queries, each with one assigned ``Parent > Child`` label and a sentiment), uploaded with
``sync`` and labelled through the annotation route, the way the official CLI does it; then a first
model version is trained on them and tagged ``live`` (the emulator-only route).
"""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

from tests.conftest import BANKING77_JSONL, Emulator, Workspace


def banking77_records(count: int) -> list[dict[str, Any]]:
    """The first ``count`` BANKING77 records (``{"comment", "labelling"}``)."""
    with open(BANKING77_JSONL, encoding="utf-8") as handle:
        return [json.loads(line) for line in islice(handle, count)]


def build_tenant(
    hook: Any, emulator: Emulator, workspace: Workspace, count: int = 200, *, metadata: bool = True
) -> list[dict[str, Any]]:
    """Upload and label ``count`` BANKING77 comments in the workspace, pin version 1 tagged ``live``.

    :param metadata: write each label with ``metadata`` (``{"user_id", "timestamp"}``), as the
        platform records who assigned it; ``False`` writes labels without it.
    :return: the records uploaded.
    """
    records = banking77_records(count)
    hook.sync_comments(workspace.source, [record["comment"] for record in records])
    for record in records:
        labelling = record["labelling"]
        if metadata:
            stamp = record["comment"]["timestamp"]
            labelling = [
                {
                    **group,
                    "assigned": [
                        {**label, "metadata": {"user_id": "analyst", "timestamp": stamp}} for label in group["assigned"]
                    ],
                }
                for group in labelling
            ]
        hook.update_annotations(
            workspace.dataset, f"{workspace.source_id}.{record['comment']['id']}", labelling=labelling
        )
    emulator.admin("POST", f"datasets/{workspace.dataset}/models", {"tag": "live"})
    return records


def export_all(hook: Any, workspace: Workspace) -> list[dict[str, Any]]:
    """Every exported comment of the workspace's dataset, in timestamp order."""
    return list(hook.iter_export(workspace.dataset))
