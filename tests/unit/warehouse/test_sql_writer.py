"""The SQL writer on PostgreSQL and SQLite: a tenant's days of activity caught up, typed, in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from airflow_provider_cm.exceptions import CommunicationsMiningBadRequestError
from airflow_provider_cm.pipelines.warehouse import rows as rows_module
from airflow_provider_cm.pipelines.warehouse.freshness import load_dataset
from airflow_provider_cm.pipelines.warehouse.rows import page_rows
from airflow_provider_cm.pipelines.warehouse.sql_writer import LoadInfo, SqlWarehouse, WarehouseSchemaError
from tests.conftest import POSTGRES_SERVER, new_workspace, postgres_test_database
from tests.tenant_month import build_tenant, export_all
from tests.unit.warehouse.warehouse_checks import assert_equals_tenant, dump, load


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse(request, tmp_path):
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
        yield SqlWarehouse(engine)
        engine.dispose()
        return
    postgres_test_database().close()  # creates cm_test, or skips when PostgreSQL is not reachable
    engine = sa.create_engine(POSTGRES_SERVER.replace("postgresql://", "postgresql+psycopg2://", 1) + "/cm_test")
    schema = "wh_" + uuid.uuid4().hex[:12]
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield SqlWarehouse(engine, schema=schema)
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture
def tenant(hook, emulator):
    workspace = new_workspace(hook)
    build_tenant(hook, emulator, workspace, 80)
    return workspace


def loads(warehouse):
    with warehouse.engine.connect() as connection:
        table = warehouse.tables["loads"]
        return [r._mapping for r in connection.execute(sa.select(table).order_by(table.c.started_at))]


def test_a_reconcile_catches_a_day_of_activity_and_writes_only_what_changed(warehouse, hook, emulator, tenant):
    first = load(warehouse, hook, tenant)
    assert (first.rows_read, first.rows_unchanged, first.rows_marked_deleted) == (80, 0, 0)
    assert_equals_tenant(warehouse, export_all(hook, tenant))
    again = load(warehouse, hook, tenant)
    assert (again.rows_written, again.rows_marked_deleted) == (0, 0) and again.rows_unchanged == first.rows_written

    day = emulator.admin(
        "POST",
        f"datasets/{tenant.dataset}/activity",
        {"day": "2099-03-02", "seed": 5, "new_comments": 4, "late_uploads": 2, "relabels": 3, "deletions": 2},
    )
    caught = load(warehouse, hook, tenant)
    exported = export_all(hook, tenant)
    assert_equals_tenant(warehouse, exported, deleted=set(day["deleted"]))
    # The new and late comments, and the relabelled ones (their comments row holds their comment hash).
    assert caught.by_table["comments"] == {"written": 4 + 2 + 3, "unchanged": 80 - 2 - 3, "marked_deleted": 2}
    # Relabels and new comments: the written label rows are those of the changed comments only.
    changed = set(day["relabelled"]) | set(day["created"]) | set(day["late"])
    assert 0 < caught.by_table["comment_labels"]["written"] <= 12 * len(changed)

    retrain = emulator.admin(
        "POST",
        f"datasets/{tenant.dataset}/activity",
        {
            "day": "2099-03-03",
            "seed": 6,
            "new_comments": 0,
            "late_uploads": 0,
            "relabels": 0,
            "deletions": 0,
            "retrain": True,
        },
    )
    assert retrain["model_version"] == 2
    after = load(warehouse, hook, tenant)
    assert_equals_tenant(warehouse, export_all(hook, tenant), deleted=set(day["deleted"]))
    # New predictions: the comments whose predictions changed get their new comment hash, nothing else.
    assert 0 < after.by_table["comments"]["written"] <= after.rows_read
    assert after.by_table["comment_labels"]["written"] > 0

    recorded = loads(warehouse)
    assert [r["rows_written"] for r in recorded] == [first.rows_written, 0, caught.rows_written, after.rows_written]
    assert [r["rows_marked_deleted"] for r in recorded] == [0, 0, caught.rows_marked_deleted, after.rows_marked_deleted]
    assert all(r["rows_read"] and r["pages"] and r["mode"] == "reconcile" for r in recorded)


def test_a_comment_read_unchanged_has_none_of_its_rows_built(warehouse, hook, emulator, tenant, monkeypatch):
    first = load(warehouse, hook, tenant)
    built: list[str] = []
    original = rows_module.comment_rows

    def counting(exported, **kwargs):
        built.append(exported["comment"]["uid"])
        return original(exported, **kwargs)

    monkeypatch.setattr(rows_module, "comment_rows", counting)
    again = load(warehouse, hook, tenant)
    assert built == [] and again.rows_written == 0 and again.rows_unchanged == first.rows_written
    assert again.by_table == {
        name: {"written": 0, "unchanged": found["written"], "marked_deleted": 0}
        for name, found in first.by_table.items()
    }
    uid = export_all(hook, tenant)[7]["comment"]["uid"]
    hook.update_annotations(
        tenant.dataset, uid, labelling=[{"group": "default", "assigned": [{"name": "Card > Lost"}]}]
    )
    relabelled = load(warehouse, hook, tenant)
    assert built == [uid] and relabelled.by_table["comments"]["written"] == 1
    labels, first_load = warehouse.tables["comment_labels"], loads(warehouse)[0]["load_id"]
    with warehouse.engine.connect() as connection:  # the label rows written since the first load: the comment's
        query = sa.select(labels.c.uid).where(labels.c._cm_load_id != first_load).distinct()
        assert connection.execute(query).scalars().all() == [uid]
    assert_equals_tenant(warehouse, export_all(hook, tenant))


def test_tables_without_comment_hashes_get_them_on_the_next_load_and_skip_after(warehouse, hook, tenant):
    first = load(warehouse, hook, tenant)
    comments = warehouse.tables["comments"]
    with warehouse.engine.begin() as connection:  # as tables of the release before the column left them
        connection.execute(comments.update().values(_cm_comment_hash=None))
    upgrade = load(warehouse, hook, tenant)
    # Every comments row gets its hash (written); no row of the long tables changes.
    assert upgrade.by_table["comments"] == {"written": 80, "unchanged": 0, "marked_deleted": 0}
    assert upgrade.rows_written == 80 and upgrade.rows_unchanged == first.rows_written - 80
    after = load(warehouse, hook, tenant)
    assert after.rows_written == 0 and after.by_table["comments"]["unchanged"] == 80
    assert_equals_tenant(warehouse, export_all(hook, tenant))


def test_a_window_load_is_first_seen_only(warehouse, hook, emulator, tenant):
    load(warehouse, hook, tenant)
    day = emulator.admin(
        "POST", f"datasets/{tenant.dataset}/activity", {"day": "2099-03-02", "seed": 2, "relabels": 3, "deletions": 2}
    )
    window = load(
        warehouse, hook, tenant, mode="window", start="2099-03-02T00:00:00Z", end="2099-03-02T23:59:59.999999Z"
    )
    assert window.rows_read == len(day["created"]) and window.rows_marked_deleted == 0
    with warehouse.engine.connect() as connection:
        comments = warehouse.tables["comments"]
        live = {
            uid for (uid,) in connection.execute(sa.select(comments.c.uid).where(comments.c._cm_deleted_at.is_(None)))
        }
    assert set(day["created"]) <= live and set(day["deleted"]) <= live  # a window load cannot see deletions


def test_a_column_that_cannot_hold_the_model_fails_before_writing(warehouse, hook, tenant):
    name = warehouse.tables["comments"].fullname
    with warehouse.engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {name} (uid TEXT PRIMARY KEY, timestamp BOOLEAN)"))
    with pytest.raises(WarehouseSchemaError, match=r"column 'timestamp' is BOOLEAN .* fix: change its type") as caught:
        load(warehouse, hook, tenant)
    assert "ALTER TABLE" in str(caught.value)
    assert set(dump(warehouse)) == {"comments"} and dump(warehouse)["comments"] == []


def test_a_table_without_the_models_key_fails_before_writing(warehouse, hook, tenant):
    name = warehouse.tables["loads"].fullname
    with warehouse.engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {name} (load_id TEXT)"))
    with pytest.raises(WarehouseSchemaError, match=r"primary key \(none\) .* ADD PRIMARY KEY \(load_id\)"):
        load(warehouse, hook, tenant)
    assert set(dump(warehouse)) == {"loads"}


def test_missing_columns_are_added_and_unknown_ones_kept(warehouse, hook, tenant):
    full = warehouse.tables["comment_user_properties"]
    with warehouse.engine.begin() as connection:
        connection.execute(
            sa.text(
                f"CREATE TABLE {full.fullname}"
                " (uid TEXT NOT NULL, name TEXT NOT NULL, note TEXT, PRIMARY KEY (uid, name))"
            )
        )
    load(warehouse, hook, tenant)
    with warehouse.engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns(full.name, schema=warehouse.schema)}
        rows = connection.execute(sa.select(full.c.name, full.c.string_value)).all()
    assert {"note", "string_value", "number_value", "_cm_row_hash"} <= columns
    assert len(rows) == 80 and {name for name, _ in rows} == {"Channel"}


def test_a_load_that_fails_midway_leaves_the_previous_state(warehouse, hook, emulator, tenant):
    load(warehouse, hook, tenant)
    before = dump(warehouse)
    emulator.admin("POST", f"datasets/{tenant.dataset}/activity", {"day": "2099-03-02", "seed": 1, "retrain": True})

    def pages():
        load_id = "failing"
        for number, page in enumerate(hook.iter_export_pages(tenant.dataset, limit=32)):
            if number == 2:
                raise ConnectionError("the API went away on the third page")
            yield page_rows(page, load_id=load_id, extracted_at=datetime.now(timezone.utc))

    with pytest.raises(ConnectionError):
        warehouse.load(pages(), LoadInfo("failing", tenant.dataset, "reconcile"), reconcile=True)
    assert dump(warehouse) == before


def test_a_reconcile_of_a_range_marks_deleted_only_inside_it(warehouse, hook, emulator, tenant):
    load(warehouse, hook, tenant)
    exported = export_all(hook, tenant)
    inside, outside = exported[0]["comment"], exported[-1]["comment"]
    for comment in (inside, outside):
        emulator_delete(emulator, tenant, comment["id"])
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    end = datetime.fromisoformat(exported[40]["comment"]["timestamp"].replace("Z", "+00:00"))
    last = (end - timedelta(microseconds=1)).isoformat()
    load_id = uuid.uuid4().hex
    pages = (
        page_rows(page, load_id=load_id, extracted_at=start)
        for page in hook.iter_export_pages(tenant.dataset, start="2026-10-01T00:00:00Z", end=last)
    )
    counts = warehouse.load(
        pages, LoadInfo(load_id, tenant.dataset, "reconcile"), reconcile=True, reconcile_range=(start, end)
    )
    assert counts.by_table["comments"]["marked_deleted"] == 1
    with warehouse.engine.connect() as connection:
        comments = warehouse.tables["comments"]
        deleted = dict(connection.execute(sa.select(comments.c.uid, comments.c._cm_deleted_at)).all())
    assert deleted[inside["uid"]] is not None and deleted[outside["uid"]] is None


def emulator_delete(emulator, workspace, comment_id):
    import requests

    from tests.conftest import TOKEN

    requests.delete(
        f"{emulator.url}/api/v1/sources/{workspace.source}/comments",
        params={"id": comment_id},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    ).raise_for_status()


def test_typed_values_read_back_typed(warehouse, hook, tenant):
    load(warehouse, hook, tenant)
    with warehouse.engine.connect() as connection:
        comments, labels = warehouse.tables["comments"], warehouse.tables["comment_labels"]
        row = connection.execute(sa.select(comments).limit(1)).one()
        label = connection.execute(
            sa.select(labels).where(labels.c.kind == "assigned", labels.c.depth == 2).limit(1)
        ).one()
    assert row.timestamp.tzinfo is not None and row.timestamp.utcoffset().total_seconds() == 0
    assert row.has_annotations is True and isinstance(row.user_properties, dict)
    assert isinstance(label.sentiment, float) and label.metadata["user_id"] == "analyst"


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_reconcile_whose_export_fails_on_a_page_leaves_the_previous_state(
    warehouse, hook, emulator, tenant, concurrency
):
    load_dataset(hook, warehouse, tenant.dataset, mode="reconcile")
    before = dump(warehouse)
    day = {"day": "2099-03-02", "seed": 4, "relabels": 5, "deletions": 5, "retrain": True}
    emulator.admin("POST", f"datasets/{tenant.dataset}/activity", day)
    # The third export request of this project is refused (400: not retried). One chain: two pages
    # were merged by then; slices: the two probes ran, and the first slice's page fails.
    rule = {"kind": "status", "status": 400, "path_contains": f"/datasets/{tenant.project}/", "every": 3}
    emulator.admin("POST", "faults", {"faults": [rule]})
    try:
        with pytest.raises(CommunicationsMiningBadRequestError):
            load_dataset(
                hook, warehouse, tenant.dataset, mode="reconcile", page_size=16, export_concurrency=concurrency
            )
    finally:
        emulator.admin("DELETE", "faults")
    assert dump(warehouse) == before
    _, after = load_dataset(hook, warehouse, tenant.dataset, mode="reconcile", export_concurrency=concurrency)
    assert after.by_table["comments"]["marked_deleted"] == 5
    assert_equals_tenant(warehouse, export_all(hook, tenant))
    with warehouse.engine.connect() as connection:  # the uids read were kept in a temporary table only
        tables = set(sa.inspect(connection).get_table_names(schema=warehouse.schema))
    assert tables == {table.name for table in warehouse.tables.values()}


def test_a_reconcile_marks_deleted_what_it_did_not_read_page_after_page(warehouse, hook, emulator, tenant):
    load(warehouse, hook, tenant)
    day = emulator.admin(
        "POST",
        f"datasets/{tenant.dataset}/activity",
        {"day": "2099-03-02", "seed": 8, "new_comments": 0, "late_uploads": 0, "relabels": 0, "deletions": 7},
    )
    _, counts = load_dataset(hook, warehouse, tenant.dataset, mode="reconcile", page_size=3, export_concurrency=3)
    assert counts.pages >= 73 // 3 and counts.by_table["comments"] == {
        "written": 0,
        "unchanged": 73,
        "marked_deleted": 7,
    }
    assert counts.by_table["comment_user_properties"]["marked_deleted"] == 7
    assert_equals_tenant(warehouse, export_all(hook, tenant), deleted=set(day["deleted"]))


def test_the_last_load_of_a_dataset_names_its_mode_window_and_model_version(warehouse, hook, tenant):
    assert warehouse.last_load(tenant.dataset) is None  # no loads table yet
    window_start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    window, _ = load_dataset(
        hook, warehouse, tenant.dataset, mode="window", start=window_start, end=window_start + timedelta(days=1)
    )
    reconcile, _ = load_dataset(
        hook, warehouse, tenant.dataset, mode="reconcile", model_version="live", dag_id="d", run_id="r", task_id="t"
    )
    last = warehouse.last_load(tenant.dataset)
    assert last is not None and last.finished_at is not None and last.started_at is not None
    assert last == replace(reconcile, started_at=last.started_at, finished_at=last.finished_at)
    assert (last.mode, last.model_version, last.window_start, last.window_end) == ("reconcile", 1, None, None)
    last_window = warehouse.last_load(tenant.dataset, mode="window")
    assert last_window is not None and last_window.load_id == window.load_id
    assert (last_window.window_start, last_window.window_end, last_window.model_version) == (
        window_start,
        window_start + timedelta(days=1),
        None,
    )
    assert warehouse.last_load(tenant.dataset, mode="lookback") is None
    assert warehouse.last_load("another/dataset") is None


def _exported(*labels: str) -> dict:
    comment = {
        "uid": "s1.c1",
        "id": "c1",
        "timestamp": "2026-10-01T12:00:00.000000Z",
        "messages": [{"body": {"text": "hello"}}],
        "user_properties": {"string:Team": "cards"},
    }
    return {"comment": comment, "annotations": {"labels": {"assigned": [{"name": [name]} for name in labels]}}}


def test_a_comment_read_twice_in_one_load_is_counted_once_per_read(warehouse):
    """The export may hand a comment twice (its timestamp moved while it ran): each read counts as it was."""

    def load_pages(*pages):
        load_id = uuid.uuid4().hex
        rows = [page_rows(page, load_id=load_id, extracted_at=datetime.now(timezone.utc)) for page in pages]
        return warehouse.load(rows, LoadInfo(load_id, "p/d", "window")).by_table

    assert load_pages([_exported("A", "B", "C")])["comment_labels"]["written"] == 3
    twice = load_pages([_exported("A", "B", "C")], [_exported("A", "B", "C")])
    assert twice["comments"] == {"written": 0, "unchanged": 2, "marked_deleted": 0}
    assert twice["comment_labels"] == {"written": 0, "unchanged": 6, "marked_deleted": 0}
    assert twice["comment_user_properties"] == {"written": 0, "unchanged": 2, "marked_deleted": 0}
    # Unchanged, then read again without C: the first read as the tables stood (3), the second 2 and C gone.
    removed = load_pages([_exported("A", "B", "C")], [_exported("A", "B")])
    assert removed["comments"] == {"written": 1, "unchanged": 1, "marked_deleted": 0}
    assert removed["comment_labels"] == {"written": 0, "unchanged": 5, "marked_deleted": 1}
    # Unchanged, then read again with D: 2 then 2 unchanged, D written once.
    added = load_pages([_exported("A", "B")], [_exported("A", "B", "D")])
    assert added["comment_labels"] == {"written": 1, "unchanged": 4, "marked_deleted": 0}
    assert added["comment_user_properties"] == {"written": 0, "unchanged": 2, "marked_deleted": 0}
