"""Exported comments as flat rows: one row per comment, the same columns in a CSV file and a SQL table.

The export route returns nested comments (messages, annotations, predictions); files and tables
that other tools read want one row per comment with a fixed set of columns. The labels and user
properties stay lossless, as JSON text.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_cm.api.labels import label_name

#: Columns of the flattened CSV export and of the dataset transfer's table.
EXPORT_COLUMNS = (
    "uid",
    "comment_id",
    "source_id",
    "timestamp",
    "created_at",
    "subject",
    "body",
    "sender",
    "user_properties",
    "assigned_labels",
    "predicted_labels",
)


def flatten_exported_comment(exported: dict[str, Any]) -> dict[str, Any]:
    """One exported comment as one flat row (keys :data:`EXPORT_COLUMNS`).

    ``subject``, ``body`` and ``sender`` come from the comment's messages (texts joined by a blank
    line when there are several); ``user_properties`` is a JSON object; ``assigned_labels`` is a
    JSON list of ``{"name", "sentiment"?}`` (parents included, as the API lists them);
    ``predicted_labels`` a JSON list of ``{"name", "probability", "sentiment"?}``.
    """
    comment = exported.get("comment", {})
    messages = comment.get("messages") or []
    uid = comment.get("uid", "")

    def texts(part: str) -> str:
        return "\n\n".join(m[part]["text"] for m in messages if isinstance(m.get(part), dict) and m[part].get("text"))

    senders = [m["from"] for m in messages if m.get("from")]
    assigned = ((exported.get("annotations") or {}).get("labels") or {}).get("assigned") or []
    predicted = (exported.get("predictions") or {}).get("labels") or []
    return {
        "uid": uid,
        "comment_id": comment.get("id", ""),
        "source_id": uid.split(".", 1)[0] if "." in uid else "",
        "timestamp": comment.get("timestamp", ""),
        "created_at": comment.get("created_at", ""),
        "subject": texts("subject"),
        "body": texts("body"),
        "sender": senders[0] if senders else "",
        "user_properties": json.dumps(comment.get("user_properties") or {}, ensure_ascii=False, sort_keys=True),
        "assigned_labels": json.dumps(assigned, ensure_ascii=False),
        "predicted_labels": json.dumps(
            [{**p, "name": label_name(p.get("name"))} for p in predicted], ensure_ascii=False
        ),
    }
