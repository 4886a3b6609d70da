"""Freshness modes and predictions of a known model version, against the in-process emulator (SQLite)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from airflow_provider_cm.exceptions import CommunicationsMiningTagError
from airflow_provider_cm.pipelines.warehouse.freshness import export_range, load_dataset
from airflow_provider_cm.pipelines.warehouse.sql_writer import SqlWarehouse
from tests.conftest import new_workspace
from tests.tenant_month import build_tenant, export_all
from tests.unit.warehouse.warehouse_checks import dump, live_labels

OCT1, OCT2, OCT3 = (datetime(2026, 10, day, tzinfo=timezone.utc) for day in (1, 2, 3))


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
    assert lookback.by_table["comments"]["written"] == 0


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
