"""Loading a tenant's export into the warehouse, and checking the warehouse against the tenant."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from airflow_provider_cm.pipelines.warehouse.rows import page_rows
from airflow_provider_cm.pipelines.warehouse.sql_writer import LoadInfo, SqlWarehouse


def load(warehouse: SqlWarehouse, hook: Any, workspace: Any, *, mode: str = "reconcile", **export: Any):
    """Export the workspace's dataset (``export``: arguments of ``iter_export_pages``) into the warehouse."""
    load_id = uuid.uuid4().hex
    extracted_at = datetime.now(timezone.utc)
    pages = (
        page_rows(page, load_id=load_id, extracted_at=extracted_at)
        for page in hook.iter_export_pages(workspace.dataset, limit=64, **export)
    )
    info = LoadInfo(load_id=load_id, dataset=workspace.dataset, mode=mode)
    return warehouse.load(pages, info, reconcile=mode == "reconcile")


def dump(warehouse: SqlWarehouse) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted."""
    out = {}
    with warehouse.engine.connect() as connection:
        for name, table in warehouse.tables.items():
            if sa.inspect(connection).has_table(table.name, schema=warehouse.schema):
                rows = connection.execute(sa.text(f"SELECT * FROM {table.fullname}"))
                out[name] = sorted(tuple(map(repr, row)) for row in rows)
    return out


def live_labels(warehouse: SqlWarehouse, kind: str) -> dict[str, set[tuple[str, Any]]]:
    """``{uid: {(label, probability or sentiment)}}`` of the labels of ``kind`` not marked deleted."""
    table = warehouse.tables["comment_labels"]
    found: dict[str, set[tuple[str, Any]]] = {}
    with warehouse.engine.connect() as connection:
        query = sa.select(table.c.uid, table.c.label, table.c.probability, table.c.sentiment).where(
            table.c.kind == kind, table.c._cm_deleted_at.is_(None)
        )
        for uid, label, probability, sentiment in connection.execute(query):
            found.setdefault(uid, set()).add((label, probability if kind == "predicted" else sentiment))
    return found


def assert_equals_tenant(
    warehouse: SqlWarehouse,
    exported: list[dict[str, Any]],
    deleted: set[str] = frozenset(),
    *,
    predictions: bool = True,
) -> None:
    """The warehouse holds the tenant: its comments live, their assigned and predicted labels, deletions marked.

    :param predictions: compare the predicted labels with the export's (``False`` when they come from a pinned version).
    """
    comments = warehouse.tables["comments"]
    with warehouse.engine.connect() as connection:
        rows = {r.uid: r for r in connection.execute(sa.select(comments))}
    live = {uid for uid, row in rows.items() if row._cm_deleted_at is None}
    assert live == {item["comment"]["uid"] for item in exported}
    for uid in deleted:
        assert rows[uid]._cm_deleted_at is not None, uid
    sentiment = {"positive": 1.0, "negative": -1.0}
    assigned, predicted = live_labels(warehouse, "assigned"), live_labels(warehouse, "predicted")
    for item in exported:
        uid = item["comment"]["uid"]
        assert assigned.get(uid, set()) == {
            (label["name"], sentiment.get(label.get("sentiment")))
            for label in item["annotations"]["labels"]["assigned"]
        }, uid
        if predictions:
            want = {(p["name"], p["probability"]) for p in item["predictions"]["labels"]}
            assert predicted.get(uid, set()) == want, uid
        assert rows[uid].timestamp == datetime.fromisoformat(item["comment"]["timestamp"].replace("Z", "+00:00"))
