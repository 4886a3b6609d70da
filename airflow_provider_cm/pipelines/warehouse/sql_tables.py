"""The warehouse model as SQLAlchemy tables: each dialect gets its own types for the model's kinds.

``TIMESTAMP WITH TIME ZONE`` (UTC in, UTC out, also where the dialect keeps no zone, as SQLite),
``DOUBLE PRECISION``, ``BOOLEAN``, ``JSONB`` on PostgreSQL, ``JSON`` where the dialect has it, text
elsewhere. The engine comes from the caller (in Airflow, common-sql's ``get_sqlalchemy_engine()``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from airflow_provider_cm.pipelines.warehouse.model import TABLES, Column, TableSpec

#: Dialects whose ``JSON`` type SQLAlchemy compiles (PostgreSQL gets ``JSONB``).
_JSON_DIALECTS = frozenset({"sqlite", "mysql", "mariadb", "duckdb"})


class UtcTimestamp(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE``; values are stored in UTC and read back as aware UTC datetimes
    (SQLite keeps no zone: its naive values are UTC)."""

    impl = sa.DateTime(timezone=True)
    #: The type holds no state: SQLAlchemy may cache statements using it.
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """An aware datetime in UTC (naive UTC for SQLite). :raises ValueError: for a naive datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"a warehouse time must carry its zone, got {value!r}")
        utc = value.astimezone(timezone.utc)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """The stored time as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):  # a dialect that hands back text
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class JsonDocument(TypeDecorator[Any]):
    """A JSON value: ``JSONB`` on PostgreSQL, ``JSON`` where the dialect has it, JSON text elsewhere."""

    impl = sa.Text
    #: The type holds no state: SQLAlchemy may cache statements using it.
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """``JSONB``, ``JSON`` or text, by dialect."""
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        if dialect.name in _JSON_DIALECTS:
            return dialect.type_descriptor(sa.JSON())
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """The value itself where the dialect has JSON, else its JSON text."""
        if value is None or dialect.name == "postgresql" or dialect.name in _JSON_DIALECTS:
            return value
        return json.dumps(value, ensure_ascii=False, sort_keys=True)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        """The JSON value (parsed from text where the dialect stores text)."""
        if isinstance(value, str) and dialect.name not in _JSON_DIALECTS and dialect.name != "postgresql":
            return json.loads(value)
        return value


def column_type(kind: str) -> TypeEngine[Any]:
    """The SQLAlchemy type of a logical kind (see :mod:`.model`)."""
    types: dict[str, TypeEngine[Any]] = {
        "text": sa.Text(),
        "integer": sa.BigInteger(),
        "double": sa.Double(),
        "boolean": sa.Boolean(create_constraint=False),
        "time": UtcTimestamp(),
        "json": JsonDocument(),
    }
    return types[kind]


def _column(column: Column) -> sa.Column[Any]:
    return sa.Column(column.name, column_type(column.kind), nullable=column.nullable, primary_key=column.key)


def table_name(spec: TableSpec, prefix: str = "") -> str:
    """The table's name in the database: ``prefix`` + the model's name."""
    return f"{prefix}{spec.name}"


def build_tables(metadata: sa.MetaData, prefix: str = "") -> dict[str, sa.Table]:
    """Every table of the model in ``metadata`` (its schema is the metadata's), by model name.

    :param prefix: put before every table name (e.g. ``"cm_"``: ``cm_comments``, ``cm_loads``).
    """
    return {
        spec.name: sa.Table(table_name(spec, prefix), metadata, *(_column(c) for c in spec.columns)) for spec in TABLES
    }


def create_table_ddl(dialect: Dialect, prefix: str = "", schema: str | None = None) -> list[str]:
    """``CREATE TABLE`` statements of the model for ``dialect`` (for docs and review)."""
    tables = build_tables(sa.MetaData(schema=schema), prefix)
    return [str(sa.schema.CreateTable(table).compile(dialect=dialect)).strip() for table in tables.values()]
