"""The warehouse model in SQL: typed DDL per dialect, and the BI wide view over real rows."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, postgresql, sqlite

from airflow_provider_cm.pipelines.warehouse.bi_view import label_column_names, wide_view_ddl
from airflow_provider_cm.pipelines.warehouse.rows import CommentRows, page_rows
from airflow_provider_cm.pipelines.warehouse.sql_tables import build_tables, create_table_ddl

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)


def ddl(dialect) -> str:
    return "\n".join(create_table_ddl(dialect))


def test_postgresql_gets_typed_columns():
    text = ddl(postgresql.dialect())
    assert "timestamp TIMESTAMP WITH TIME ZONE NOT NULL" in text
    assert "probability DOUBLE PRECISION" in text and "has_annotations BOOLEAN" in text
    assert "user_properties JSONB" in text and "metadata JSONB" in text and "model_version BIGINT" in text
    assert "PRIMARY KEY (uid, kind, label)" in text and "PRIMARY KEY (load_id)" in text


def test_sqlite_gets_json_and_a_dialect_without_json_gets_text():
    assert "user_properties JSON" in ddl(sqlite.dialect())
    text = ddl(mssql.dialect())
    assert "user_properties NVARCHAR(max)" in text or "user_properties VARCHAR(max)" in text
    assert "JSON" not in text


def test_a_prefix_and_schema_name_the_tables():
    tables = build_tables(sa.MetaData(schema="bi"), prefix="cm_")
    assert sorted(t.fullname for t in tables.values()) == [
        "bi.cm_comment_entities",
        "bi.cm_comment_labels",
        "bi.cm_comment_user_properties",
        "bi.cm_comments",
        "bi.cm_loads",
    ]


def test_long_or_clashing_label_columns_are_named_apart():
    names = label_column_names(["A" * 70, "A" * 71, "Card"], max_length=63)
    assert len(set(names.values())) == 3 and all(len(n) <= 63 for n in names.values())
    with pytest.raises(ValueError, match="would share"):
        label_column_names(["uid"], max_length=63)
    with pytest.raises(ValueError, match="would share"):
        label_column_names(["Card", "card"], max_length=63)


def test_the_wide_view_has_one_probability_column_per_label_and_zero_where_not_predicted(banking):
    _, exported = banking
    rows = page_rows(exported, load_id="l", extracted_at=AT)
    taxonomy = [
        *sorted({r["label"] for r in rows.tables["comment_labels"] if r["kind"] == "assigned"}),
        "Never predicted",
    ]
    engine = sa.create_engine("sqlite://")
    metadata = sa.MetaData()
    tables = build_tables(metadata)
    metadata.create_all(engine)
    deleted = exported[1]["comment"]["uid"]
    with engine.begin() as connection:
        for name, table_rows in rows.tables.items():
            if table_rows:
                connection.execute(tables[name].insert(), table_rows)
        connection.execute(
            tables["comments"].update().where(tables["comments"].c.uid == deleted).values(_cm_deleted_at=AT)
        )
        for statement in wide_view_ddl(engine.dialect, taxonomy):
            connection.execute(sa.text(statement))
        view = {r.uid: r._mapping for r in connection.execute(sa.text("SELECT * FROM comment_label_probabilities"))}
    assert len(view) == len(exported) - 1 and deleted not in view
    for item in exported[:30]:
        if item["comment"]["uid"] == deleted:
            continue
        shown = view[item["comment"]["uid"]]
        predicted = {p["name"]: p["probability"] for p in item["predictions"]["labels"]}
        for label in taxonomy:
            assert shown[label] == pytest.approx(predicted.get(label, 0.0))
        assert shown["Never predicted"] == 0
        assert shown["body"] == item["comment"]["messages"][0]["body"]["text"]


def test_the_wide_view_ddl_is_generated_per_dialect():
    pg = wide_view_ddl(postgresql.dialect(), ["Card > Lost"], schema="bi", prefix="cm_")
    assert pg[0] == "DROP VIEW IF EXISTS bi.cm_comment_label_probabilities"
    assert 'AS "Card > Lost"' in pg[1] and "bi.cm_comment_labels.kind = 'predicted'" in pg[1]


def test_rows_of_no_comments_are_empty():
    assert all(rows == [] for rows in CommentRows().tables.values())
