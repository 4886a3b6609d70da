"""Freshness modes and predictions of a known model version, against the in-process emulator (SQLite)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from airflow_provider_cm.exceptions import CommunicationsMiningTagError
from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook
from airflow_provider_cm.pipelines.warehouse.freshness import export_range, export_rows, load_dataset
from airflow_provider_cm.pipelines.warehouse.sql_writer import SqlWarehouse
from tests.conftest import new_workspace
from tests.tenant_month import banking77_records, build_tenant, export_all
from tests.unit.warehouse.warehouse_checks import dump, live_labels

OCT1, OCT2, OCT3 = (datetime(2026, 10, day, tzinfo=timezone.utc) for day in (1, 2, 3))
EXPORT_ROUTE = "POST /api/v1/datasets/{project}/{name}/export"


@pytest.fixture
def tenant(hook, emulator):
    workspace = new_workspace(hook)
    build_tenant(hook, emulator, workspace, 60)
    return workspace


@pytest.fixture
def warehouse(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    yield SqlWarehouse(engine, prefix="cm_")
    engine.dispose()


def test_a_lookback_catches_a_relabel_a_window_misses(hook, tenant, warehouse):
    load_dataset(hook, warehouse, tenant.dataset, mode="window", start=OCT1, end=OCT2)
    uid = export_all(hook, tenant)[5]["comment"]["uid"]
    hook.update_annotations(
        tenant.dataset, uid, labelling=[{"group": "default", "assigned": [{"name": "Card > Lost"}]}]
    )
    _, window = load_dataset(hook, warehouse, tenant.dataset, mode="window", start=OCT2, end=OCT3)
    assert window.rows_read == 0 and ("Card > Lost", None) not in live_labels(warehouse, "assigned")[uid]
    info, lookback = load_dataset(
        hook, warehouse, tenant.dataset, mode="lookback", start=OCT2, end=OCT3, lookback_days=1
    )
    assert info.window_start == OCT1 and lookback.rows_read == 60
    assert live_labels(warehouse, "assigned")[uid] == {("Card", None), ("Card > Lost", None)}
    # Only the relabelled comment's rows: its new label, and its comments row (its comment hash changed).
    assert lookback.by_table["comments"] == {"written": 1, "unchanged": 59, "marked_deleted": 0}
    with warehouse.engine.connect() as connection:
        labels = warehouse.tables["comment_labels"]
        query = sa.select(labels.c.uid).where(labels.c._cm_load_id == info.load_id).distinct()
        assert connection.execute(query).scalars().all() == [uid]


def test_predictions_of_a_tag_name_the_version_and_follow_the_tag(hook, emulator, tenant, warehouse):
    info, _ = load_dataset(hook, warehouse, tenant.dataset, mode="reconcile", model_version="live")
    assert info.model_version == 1
    uids = [item["comment"]["uid"] for item in export_all(hook, tenant)]
    expected = hook.predict_comments(tenant.dataset, 1, uids[:10], threshold=0.01)
    predicted = live_labels(warehouse, "predicted")
    for prediction in expected:
        assert predicted[prediction["uid"]] == {(" > ".join(p["name"]), p["probability"]) for p in prediction["labels"]}
    with warehouse.engine.connect() as connection:
        labels, comments = warehouse.tables["comment_labels"], warehouse.tables["comments"]
        versions = connection.execute(sa.select(labels.c.model_version).where(labels.c.kind == "predicted")).scalars()
        assert set(versions) == {1}
    for uid in uids[:20]:  # a relabel and a retrain tagged live: the next load follows the tag
        hook.update_annotations(
            tenant.dataset, uid, labelling=[{"group": "default", "assigned": [{"name": "Card > Lost"}]}]
        )
    emulator.admin("POST", f"datasets/{tenant.dataset}/models", {"tag": "live"})
    info, counts = load_dataset(hook, warehouse, tenant.dataset, mode="reconcile", model_version="live")
    assert info.model_version == 2 and counts.by_table["comments"]["written"] == 60
    with warehouse.engine.connect() as connection:
        assert set(connection.execute(sa.select(comments.c.model_version)).scalars()) == {2}
        live = sa.select(labels.c.model_version).where(labels.c.kind == "predicted", labels.c._cm_deleted_at.is_(None))
        assert set(connection.execute(live).scalars()) == {2}
        recorded = connection.execute(sa.select(warehouse.tables["loads"].c.model_version)).scalars().all()
    assert sorted(recorded) == [1, 2]


def test_without_a_version_the_exports_predictions_load_with_a_null_version(hook, tenant, warehouse):
    info, _ = load_dataset(hook, warehouse, tenant.dataset, mode="window", start=OCT1, end=OCT2)
    assert info.model_version is None
    with warehouse.engine.connect() as connection:
        labels = warehouse.tables["comment_labels"]
        versions = connection.execute(sa.select(labels.c.model_version).where(labels.c.kind == "predicted")).scalars()
        assert set(versions) == {None}


def test_a_tag_that_cannot_be_resolved_fails_with_the_reason_before_anything_is_written(hook, tenant, warehouse):
    with pytest.raises(CommunicationsMiningTagError, match="staging"):
        load_dataset(hook, warehouse, tenant.dataset, mode="reconcile", model_version="staging")
    assert dump(warehouse) == {}


@pytest.mark.parametrize(
    ("mode", "start", "end", "days", "message"),
    [
        ("nightly", OCT1, OCT2, 0, "mode must be one of"),
        ("window", None, OCT2, 0, "needs a window"),
        ("lookback", OCT2, OCT1, 1, "must be before"),
        ("lookback", OCT1, OCT2, -1, "0 or more"),
    ],
)
def test_a_bad_mode_or_window_is_refused(mode, start, end, days, message):
    with pytest.raises(ValueError, match=message):
        export_range(mode, start, end, lookback_days=days)


def test_a_reconcile_may_cover_everything():
    assert export_range("reconcile", None, None).reconcile


def test_predict_comments_answers_in_the_order_asked(hook, tenant):
    uids = [item["comment"]["uid"] for item in export_all(hook, tenant)][:7][::-1]
    answer = hook.predict_comments(tenant.dataset, "live", uids)
    assert [p["uid"] for p in answer] == uids
    with pytest.raises(ValueError, match="1 to 4096 uids"):
        hook.predict_comments(tenant.dataset, 1, [])


# -- sliced reading ------------------------------------------------------------------------------------

EDGES = ("0001-01-01T00:00:00.000000Z", "2099-06-01T12:00:00.000000Z", "9999-12-31T23:59:59.999999Z")


def _without_load(rows):
    """Rows of every page, by table, without what differs between two reads (load id, extracted-at)."""
    tables: dict[str, list] = {}
    for page in rows:
        for name, found in page.tables.items():
            tables.setdefault(name, []).extend(
                {k: v for k, v in row.items() if k not in ("_cm_load_id", "_cm_extracted_at")} for row in found
            )
    return tables


@pytest.fixture
def edges(hook, tenant):
    """The tenant plus comments at the earliest and latest instants the API writes, and one far ahead."""
    records = banking77_records(len(EDGES))
    edge_comments = [
        dict(record["comment"], id=f"edge-{i}", timestamp=moment)
        for i, (record, moment) in enumerate(zip(records, EDGES, strict=True))
    ]
    hook.sync_comments(tenant.source, edge_comments)
    return tenant


def test_sliced_rows_equal_a_serial_read_in_the_same_order_whatever_the_timestamps(hook, edges):
    exported = export_all(hook, edges)
    assert {item["comment"]["timestamp"] for item in exported} >= set(EDGES)
    serial = export_rows(hook, edges.dataset, mode="reconcile", export_concurrency=1, page_size=7)
    sliced = export_rows(hook, edges.dataset, mode="reconcile", export_concurrency=8, page_size=7)
    serial_rows, sliced_rows = _without_load(serial), _without_load(sliced)
    assert [r["uid"] for r in sliced_rows["comments"]] == [item["comment"]["uid"] for item in exported]
    assert sliced_rows == serial_rows
    assert sliced.comments == serial.comments == len(exported) == 63 and sliced.pages >= 63 // 7


def test_a_sliced_window_reads_the_window_only(hook, tenant):
    exported = export_all(hook, tenant)
    inside = [i["comment"]["uid"] for i in exported if "2026-10-01" <= i["comment"]["timestamp"] < "2026-10-02"]
    rows = _without_load(export_rows(hook, tenant.dataset, start=OCT1, end=OCT2, page_size=5, export_concurrency=4))
    assert [r["uid"] for r in rows["comments"]] == inside and inside


def test_predictions_of_a_pinned_version_are_asked_in_the_slices_workers(emulator, tenant):
    class RecordingHook(CommunicationsMiningHook):
        threads: list[str] = []

        def predict_comments(self, *args, **kwargs):
            RecordingHook.threads.append(threading.current_thread().name)
            return super().predict_comments(*args, **kwargs)

    hook = RecordingHook()
    try:
        sliced = _without_load(export_rows(hook, tenant.dataset, mode="reconcile", model_version="live", page_size=8))
        serial = _without_load(
            export_rows(hook, tenant.dataset, mode="reconcile", model_version=1, page_size=8, export_concurrency=1)
        )
    finally:
        hook.close()
    assert sliced == serial and {r["model_version"] for r in sliced["comments"]} == {1}
    workers = RecordingHook.threads[: len(RecordingHook.threads) // 2]
    assert workers and all(name.startswith("cm-export-") for name in workers)


def test_the_version_is_resolved_when_the_export_is_made_before_anything_is_read(hook, emulator, tenant):
    before = emulator.requests_to(EXPORT_ROUTE)
    rows = export_rows(hook, tenant.dataset, mode="reconcile", model_version="live")
    assert rows.model_version == 1 and rows.load_info(dag_id="d").model_version == 1
    assert emulator.requests_to(EXPORT_ROUTE) == before
    rows.close()
    with pytest.raises(CommunicationsMiningTagError, match="staging"):
        export_rows(hook, tenant.dataset, mode="reconcile", model_version="staging")


def test_a_reconcile_of_some_sources_marks_deleted_only_their_comments(hook, emulator, tenant, warehouse):
    other = hook.create_source(f"{tenant.project}/other", title="Other")["id"]
    hook.update_dataset(tenant.dataset, source_ids=[tenant.source_id, other])
    hook.sync_comments(
        f"{tenant.project}/other", [dict(r["comment"], id=f"o{i}") for i, r in enumerate(banking77_records(5))]
    )
    _, first = load_dataset(hook, warehouse, tenant.dataset, mode="reconcile")
    assert first.rows_read == 65
    day = emulator.admin(
        "POST",
        f"datasets/{tenant.dataset}/activity",
        {
            "day": "2099-03-02",
            "seed": 3,
            "new_comments": 0,
            "late_uploads": 0,
            "relabels": 0,
            "deletions": 3,
            "source_id": tenant.source_id,
        },
    )
    # The replay deletes comments of any source of the dataset: count those of each.
    of_other = sum(uid.startswith(f"{other}.") for uid in day["deleted"])
    _, some = load_dataset(hook, warehouse, tenant.dataset, mode="reconcile", source_ids=[other])
    assert (some.rows_read, some.by_table["comments"]["marked_deleted"]) == (5 - of_other, of_other)
    _, every = load_dataset(hook, warehouse, tenant.dataset, mode="reconcile")
    assert (every.rows_read, every.by_table["comments"]["marked_deleted"]) == (62, 3 - of_other)


def test_a_reconcile_of_an_empty_dataset_marks_every_row_deleted(hook, emulator, tenant, warehouse):
    load_dataset(hook, warehouse, tenant.dataset, mode="reconcile")
    emulator.admin(
        "POST",
        f"datasets/{tenant.dataset}/activity",
        {"day": "2099-03-02", "seed": 3, "new_comments": 0, "late_uploads": 0, "relabels": 0, "deletions": 60},
    )
    _, counts = load_dataset(hook, warehouse, tenant.dataset, mode="reconcile")
    assert (counts.rows_read, counts.pages, counts.by_table["comments"]["marked_deleted"]) == (0, 0, 60)
