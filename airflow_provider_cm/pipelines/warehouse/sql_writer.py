"""Write the warehouse model into SQL through a SQLAlchemy engine: merge by key, soft deletes, one transaction.

:class:`SqlWarehouse` takes the engine (in Airflow, common-sql's ``get_sqlalchemy_engine()``) and:

1. **checks** the tables that exist against the model before writing anything: a column whose type
   cannot hold the model's values, or a table whose primary key is not the model's, fails with
   :class:`WarehouseSchemaError` naming the table, the column and the fix;
2. **creates** the missing tables and **adds** the missing columns (added columns are nullable;
   nothing is dropped, columns the model does not know are left alone);
3. **merges** each page of rows by key: a comment whose comment hash (``_cm_comment_hash``, the
   hash of the comment as the API gave it) is stored on a live row is unchanged, and so are its
   live rows, none of them built or compared (counted at the end of the load, one query per
   table); for the others, a new key is inserted, a key whose row hash changed (or
   that was marked deleted) is updated, a key whose hash is already stored is left untouched; a
   label, entity or user property that a comment read in this load no longer has is marked
   deleted (``_cm_deleted_at``);
4. with ``reconcile``, **marks deleted** every comment not seen by the load (within its range and
   sources, if given) and its rows of the long tables; nothing is ever hard-deleted. Every
   load keeps the uids it reads page by page in a temporary table of the same transaction
   (with whether each read was unchanged, for the counts); the rows not seen are marked by one
   ``UPDATE ... WHERE NOT EXISTS`` per table: the load's memory holds the pages in flight,
   never the dataset's uids;
5. records the load in the ``loads`` table,

all in one transaction: a load that fails midway (the API, a row, the database) leaves the tables
as the previous load left them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_cm.pipelines.warehouse.bi_view import VIEW_NAME, wide_view_ddl
from airflow_provider_cm.pipelines.warehouse.model import (
    COMMENT_HASH,
    COMMENTS,
    DATA_TABLES,
    DELETED_AT,
    LOADS,
    ROW_HASH,
    TABLES,
    Column,
    TableSpec,
)
from airflow_provider_cm.pipelines.warehouse.rows import CommentRows
from airflow_provider_cm.pipelines.warehouse.sql_tables import build_tables, column_type

#: uids per ``IN (...)`` query.
CHUNK = 500
_LOG = logging.getLogger(__name__)


class WarehouseSchemaError(ValueError):
    """An existing table cannot hold the warehouse model; raised before anything is written."""


@dataclass(frozen=True)
class LoadInfo:
    """What the ``loads`` row says about a load (times are aware datetimes)."""

    load_id: str
    dataset: str
    mode: str
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    model_version: int | None = None
    #: Read back by :meth:`SqlWarehouse.last_load`; a load being written records its own times.
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass
class LoadCounts:
    """What a load did: comments read, pages, rows written, unchanged and marked deleted (all tables)."""

    rows_read: int = 0
    pages: int = 0
    rows_written: int = 0
    rows_unchanged: int = 0
    rows_marked_deleted: int = 0
    by_table: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, table: str, what: str, count: int) -> None:
        """Count ``count`` rows of ``table`` as ``what`` (``written``, ``unchanged``, ``marked_deleted``)."""
        counts = self.by_table.setdefault(table, {"written": 0, "unchanged": 0, "marked_deleted": 0})
        counts[what] += count
        if what == "written":
            self.rows_written += count
        elif what == "unchanged":
            self.rows_unchanged += count
        else:
            self.rows_marked_deleted += count


def loads_row(info: LoadInfo, counts: LoadCounts, started: datetime) -> dict[str, Any]:
    """The ``loads`` table's row of a load that finished now (the SQL warehouse's and the Parquet files')."""
    return {
        "load_id": info.load_id,
        "dag_id": info.dag_id,
        "run_id": info.run_id,
        "task_id": info.task_id,
        "dataset": info.dataset,
        "mode": info.mode,
        "window_start": info.window_start,
        "window_end": info.window_end,
        "model_version": info.model_version,
        "rows_read": counts.rows_read,
        "rows_written": counts.rows_written,
        "rows_unchanged": counts.rows_unchanged,
        "rows_marked_deleted": counts.rows_marked_deleted,
        "pages": counts.pages,
        "started_at": started,
        "finished_at": datetime.now(timezone.utc),
    }


def _accepts(kind: str, found: Any, dialect: str) -> bool:
    if kind == "text":
        return isinstance(found, sa.String)
    if kind == "integer":
        return isinstance(found, sa.Integer)
    if kind == "double":
        return isinstance(found, sa.Float)
    if kind == "boolean":
        return isinstance(found, sa.Boolean)
    if kind == "time":
        return isinstance(found, sa.DateTime) and (dialect != "postgresql" or bool(found.timezone))
    if kind == "json":
        return isinstance(found, sa.JSON) or (dialect != "postgresql" and isinstance(found, sa.String))
    return False


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class SqlWarehouse:
    """The warehouse model's tables in one database schema, written through ``engine``.

    :param engine: a SQLAlchemy engine (PostgreSQL and SQLite are tested; any dialect SQLAlchemy
        compiles the model's types for should work).
    :param schema: the database schema of the tables (``None``: the connection's default).
    :param prefix: put before every table name (``"cm_"`` gives ``cm_comments``, ``cm_loads``...).
    :param bi_view: refresh the wide view for BI tools at the end of each load (:meth:`refresh_view`).
    """

    def __init__(self, engine: Engine, *, schema: str | None = None, prefix: str = "", bi_view: bool = True) -> None:
        self.engine = engine
        self.bi_view = bi_view
        self.schema = schema
        self.prefix = prefix
        self.metadata = sa.MetaData(schema=schema)
        self.tables = build_tables(self.metadata, prefix)

    # -- the schema -------------------------------------------------------------------------------

    def _ddl_type(self, column: Column) -> str:
        return str(column_type(column.kind).compile(dialect=self.engine.dialect))

    def plan(self, connection: Connection) -> tuple[list[str], list[tuple[str, Column]]]:
        """What :meth:`prepare` would do: ``(tables to create, (table, column) to add)``.

        :raises WarehouseSchemaError: naming every column (or key) an existing table gets wrong, and the fix.
        """
        inspector = sa.inspect(connection)
        dialect = self.engine.dialect.name
        problems: list[str] = []
        create: list[str] = []
        add: list[tuple[str, Column]] = []
        for spec in TABLES:
            table = self.tables[spec.name]
            if not inspector.has_table(table.name, schema=self.schema):
                create.append(spec.name)
                continue
            found = {c["name"]: c for c in inspector.get_columns(table.name, schema=self.schema)}
            for column in spec.columns:
                existing = found.get(column.name)
                if existing is None:
                    add.append((spec.name, column))
                elif not _accepts(column.kind, existing["type"], dialect):
                    expected = self._ddl_type(column)
                    problems.append(
                        f"table {table.fullname!r} column {column.name!r} is {existing['type']} but the warehouse model"
                        f" needs {expected} ({column.kind}); fix: change its type (ALTER TABLE {table.fullname}"
                        f" ALTER COLUMN {column.name} TYPE {expected}), or load into other tables (another"
                        " schema or table prefix)"
                    )
            key = inspector.get_pk_constraint(table.name, schema=self.schema).get("constrained_columns") or []
            if sorted(key) != sorted(spec.key):
                problems.append(
                    f"table {table.fullname!r} has primary key ({', '.join(key) or 'none'}) but the warehouse model"
                    f" merges by ({', '.join(spec.key)}); fix: ALTER TABLE {table.fullname} ADD PRIMARY KEY"
                    f" ({', '.join(spec.key)}) (after removing duplicate rows), or load into other tables"
                )
        if problems:
            raise WarehouseSchemaError("the warehouse tables cannot hold the model:\n- " + "\n- ".join(problems))
        return create, add

    def prepare(self, connection: Connection) -> None:
        """Check the existing tables (nothing written if one is wrong), create missing ones, add missing columns.

        :raises WarehouseSchemaError: see :meth:`plan`.
        """
        create, add = self.plan(connection)
        for name in create:
            self.tables[name].create(connection)
        preparer = self.engine.dialect.identifier_preparer
        for name, column in add:
            table = self.tables[name]
            connection.execute(
                sa.text(
                    f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN"
                    f" {preparer.quote(column.name)} {self._ddl_type(column)}"
                )
            )

    # -- reading ----------------------------------------------------------------------------------

    def check_dataset(self, connection: Connection, dataset: str) -> None:
        """Refuse to load ``dataset`` into tables that hold another dataset's loads.

        The tables have no dataset column: a reconcile marks deleted every comment of the tables it
        did not read, so a second dataset in the same tables would have its comments marked deleted
        by the first one's reconcile. One dataset per schema or table prefix.

        :raises WarehouseSchemaError: naming the dataset the tables hold and the fix.
        """
        loads = self.tables[LOADS.name]
        query = sa.select(loads.c.dataset).where(loads.c.dataset != dataset).limit(1)
        other = connection.execute(query).scalar()
        if other is not None:
            raise WarehouseSchemaError(
                f"the warehouse tables {loads.fullname!r} and the others of this prefix hold dataset {other!r}, "
                f"not {dataset!r}: a reconcile of one would mark the other's comments deleted. Load each dataset "
                "into its own schema or table prefix"
            )

    def last_load(self, dataset: str, *, mode: str | None = None) -> LoadInfo | None:
        """The latest load of ``dataset`` recorded in the ``loads`` table (of ``mode``, if given).

        Latest by ``finished_at``. An operator compares its :attr:`~LoadInfo.model_version` with the
        version a tag points to now, and reconciles when the tag moved.

        :param dataset: ``"project/dataset"`` as the loads recorded it.
        :param mode: only loads of this mode (``window``, ``lookback``, ``reconcile``); ``None``: any.
        :return: its row as a :class:`LoadInfo` (with ``started_at`` and ``finished_at``), or
            ``None`` if there is no ``loads`` table yet or no load of the dataset.
        """
        loads = self.tables[LOADS.name]
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table(loads.name, schema=self.schema):
                return None
            query = sa.select(loads).where(loads.c.dataset == dataset)
            if mode is not None:
                query = query.where(loads.c.mode == mode)
            query = query.order_by(loads.c.finished_at.desc(), loads.c.started_at.desc()).limit(1)
            row = connection.execute(query).first()
        if row is None:
            return None
        found = row._mapping
        return LoadInfo(
            load_id=found["load_id"],
            dataset=found["dataset"],
            mode=found["mode"],
            dag_id=found["dag_id"],
            run_id=found["run_id"],
            task_id=found["task_id"],
            window_start=found["window_start"],
            window_end=found["window_end"],
            model_version=found["model_version"],
            started_at=found["started_at"],
            finished_at=found["finished_at"],
        )

    # -- writing ----------------------------------------------------------------------------------

    def _merge_table(
        self,
        connection: Connection,
        spec: TableSpec,
        rows: list[dict[str, Any]],
        uids: Sequence[str],
        now: datetime,
        counts: LoadCounts,
    ) -> None:
        table = self.tables[spec.name]
        key = spec.key
        # A comments row is current only if its comment hash is too (a load before the column existed left none).
        hashes = [ROW_HASH, COMMENT_HASH] if spec is COMMENTS else [ROW_HASH]
        stored: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for chunk in _chunks(uids):
            query = sa.select(
                *(table.c[k] for k in key), table.c[DELETED_AT], *(table.c[name] for name in hashes)
            ).where(table.c.uid.in_(chunk))
            for found in connection.execute(query):
                stored[tuple(found[: len(key)])] = tuple(found[len(key) :])
        inserts, updates, unchanged = [], [], 0
        seen = set()
        for row in rows:
            identity = tuple(row[k] for k in key)
            seen.add(identity)
            before = stored.get(identity)
            if before is None:
                inserts.append(row)
            elif before[0] is None and list(before[1:]) == [row.get(name) for name in hashes]:
                unchanged += 1
            else:
                updates.append(row)
        if inserts:
            connection.execute(table.insert(), inserts)
        if updates:
            others = [c.name for c in table.columns if c.name not in key]
            statement = (
                table.update()
                .where(sa.and_(*(table.c[k] == sa.bindparam(f"key_{k}") for k in key)))
                .values({name: sa.bindparam(f"new_{name}") for name in others})
            )
            connection.execute(
                statement,
                [{**{f"key_{k}": row[k] for k in key}, **{f"new_{n}": row.get(n) for n in others}} for row in updates],
            )
        counts.add(spec.name, "written", len(inserts) + len(updates))
        counts.add(spec.name, "unchanged", unchanged)
        if spec is not COMMENTS:
            gone = [identity for identity, (deleted, *_) in stored.items() if identity not in seen and deleted is None]
            self._mark_deleted(connection, spec, gone, now, counts)

    def _unchanged_comments(self, connection: Connection, hashes: dict[str, str]) -> set[str]:
        """The uids whose comment hash is stored on a live ``comments`` row.

        Equal comment hashes mean equal rows (:func:`~.rows.comment_hash`), so these comments'
        rows are neither built nor compared; their long tables' rows are counted unchanged from
        the load's table of the uids seen (:meth:`_count_unchanged`).
        """
        comments = self.tables[COMMENTS.name]
        unchanged: set[str] = set()
        for chunk in _chunks(list(hashes)):
            query = sa.select(comments.c.uid, comments.c[COMMENT_HASH]).where(
                comments.c.uid.in_(chunk), comments.c[DELETED_AT].is_(None)
            )
            unchanged.update(uid for uid, stored in connection.execute(query) if stored == hashes[uid])
        return unchanged

    def _count_unchanged(
        self, connection: Connection, seen: sa.Table, counts: LoadCounts, uids: Sequence[str] | None = None
    ) -> None:
        """Count unchanged the live long-table rows of each read ``seen`` unchanged, once per read.

        With ``uids``: only those comments' reads, which are then no longer flagged (a comment
        read again, changed this time, has its earlier read counted as the tables stood before
        this read's rows are merged). Without: every read still flagged, at the end of the load.
        """
        where: list[sa.ColumnElement[bool]] = [seen.c.unchanged]
        if uids is not None:
            where.append(seen.c.uid.in_(list(uids)))
            if not connection.execute(sa.select(seen.c.uid).where(*where).limit(1)).first():
                return
        for spec in DATA_TABLES[1:]:
            table = self.tables[spec.name]
            count = (
                sa.select(sa.func.count())
                .select_from(table.join(seen, seen.c.uid == table.c.uid))
                .where(*where, table.c[DELETED_AT].is_(None))
            )
            counts.add(spec.name, "unchanged", connection.execute(count).scalar() or 0)
        if uids is not None:
            connection.execute(seen.update().where(*where).values(unchanged=False))

    def _mark_deleted(
        self, connection: Connection, spec: TableSpec, keys: list[tuple[Any, ...]], now: datetime, counts: LoadCounts
    ) -> None:
        if not keys:
            return
        table = self.tables[spec.name]
        statement = (
            table.update()
            .where(sa.and_(*(table.c[k] == sa.bindparam(f"key_{k}") for k in spec.key)))
            .values({DELETED_AT: now})
        )
        connection.execute(
            statement, [{f"key_{k}": value for k, value in zip(spec.key, identity, strict=True)} for identity in keys]
        )
        counts.add(spec.name, "marked_deleted", len(keys))

    def merge_page(
        self, connection: Connection, rows: CommentRows, now: datetime, counts: LoadCounts, seen: sa.Table
    ) -> None:
        """Merge one page's rows into every data table (see the module's description).

        Comments whose comment hash is already stored (on a live row) are counted unchanged, and
        their rows are not built; the others are merged table by table. The page's uids go into
        ``seen`` (the load's table of uids read, :meth:`_seen_table`), where :meth:`load` counts
        the long tables' rows of the unchanged comments at its end (one query per table, not per page).
        """
        uids = rows.uids
        counts.rows_read += len(uids)
        counts.pages += 1
        unchanged = self._unchanged_comments(connection, rows.comment_hashes)
        changed = [uid for uid in uids if uid not in unchanged]
        if unchanged:
            counts.add(COMMENTS.name, "unchanged", len(uids) - len(changed))
        for chunk in _chunks(changed):  # read earlier in this load, unchanged then: count that read now
            self._count_unchanged(connection, seen, counts, chunk)
        if uids:
            connection.execute(seen.insert(), [{"uid": uid, "unchanged": uid in unchanged} for uid in uids])
        if not changed:
            return
        if unchanged:
            rows = rows.without(unchanged)
        for spec in DATA_TABLES:
            self._merge_table(connection, spec, rows.tables.get(spec.name, []), changed, now, counts)

    def _seen_table(self, connection: Connection) -> sa.Table:
        """A temporary table of the uids this load reads and whether each was unchanged, empty.

        It lives in the connection's own temporary schema (never the warehouse's) and is dropped
        with it; PostgreSQL drops it at the end of the transaction as well.
        """
        seen = sa.Table(
            f"{self.prefix}load_seen",
            sa.MetaData(),
            # Not unique: a comment whose timestamp moved while the export ran may be read twice.
            sa.Column("uid", sa.Text(), nullable=False, index=True),
            sa.Column("unchanged", sa.Boolean(), nullable=False),
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DROP",
        )
        if self.engine.dialect.name == "sqlite":  # its DDL may outlive a failed load on a pooled connection
            name = self.engine.dialect.identifier_preparer.quote(seen.name)
            connection.execute(sa.text(f"DROP TABLE IF EXISTS temp.{name}"))
        seen.create(connection)
        return seen

    def _reconcile(
        self,
        connection: Connection,
        seen: sa.Table,
        now: datetime,
        counts: LoadCounts,
        scope: tuple[datetime | None, datetime | None],
        sources: Sequence[str] | None,
    ) -> None:
        """Mark deleted, in one statement per table, the comments in ``scope`` not in ``seen`` and their rows.

        The long tables first: their rows of the comments about to be marked (live, in scope, not
        seen), found through the comments' key and each long table's (``uid`` first), so a
        statement touches the rows of the comments gone, not every row of the table.
        """
        comments = self.tables["comments"]
        gone = [comments.c[DELETED_AT].is_(None), ~sa.exists().where(seen.c.uid == comments.c.uid)]
        start, end = scope
        if start is not None:
            gone.append(comments.c.timestamp >= start)
        if end is not None:
            gone.append(comments.c.timestamp < end)
        if sources:
            gone.append(comments.c.source_id.in_(list(sources)))
        for spec in (*(spec for spec in DATA_TABLES if spec is not COMMENTS), COMMENTS):
            table = self.tables[spec.name]
            if spec is COMMENTS:
                where = gone
            else:
                where = [table.c[DELETED_AT].is_(None), table.c.uid.in_(sa.select(comments.c.uid).where(*gone))]
            result = connection.execute(table.update().where(*where).values({DELETED_AT: now}))
            counts.add(spec.name, "marked_deleted", result.rowcount)

    def load(
        self,
        pages: Iterable[CommentRows],
        info: LoadInfo,
        *,
        reconcile: bool = False,
        reconcile_range: tuple[datetime | None, datetime | None] = (None, None),
        reconcile_sources: Sequence[str] | None = None,
        started_at: datetime | None = None,
    ) -> LoadCounts:
        """Check and prepare the tables, merge every page, reconcile if asked, record the load: one transaction.

        Anything raised while reading ``pages`` or writing rolls the whole load back.

        :param pages: the rows of each page read (:func:`~.rows.page_rows`), consumed as they come.
        :param info: what the ``loads`` row records.
        :param reconcile: mark comments not seen by this load as deleted (and their long-table rows).
        :param reconcile_range: ``(start, end)`` on ``comments.timestamp``, end exclusive: only
            comments in it may be marked deleted (a reconcile of part of the dataset); ``(None, None)``: all.
        :param reconcile_sources: only comments of these source ids may be marked deleted (a
            reconcile of some of the dataset's sources); ``None``: all.
        :param started_at: when the load started (aware); now if not given.
        :return: the counts, as written to the ``loads`` row.
        :raises WarehouseSchemaError: before anything is written, if an existing table cannot hold the model.
        """
        started = started_at or datetime.now(timezone.utc)
        counts = LoadCounts()
        with self.engine.begin() as connection:
            self.prepare(connection)
            self.check_dataset(connection, info.dataset)
            if self.engine.dialect.name == "postgresql":
                # Every statement of a load finds rows by key. Without statistics (tables filled in
                # this transaction, or not analyzed yet) PostgreSQL's planner would scan a whole
                # table for each page's lookup: a load of N comments would cost N squared.
                connection.execute(sa.text("SET LOCAL enable_seqscan = off"))
            seen = self._seen_table(connection)
            for page in pages:
                self.merge_page(connection, page, datetime.now(timezone.utc), counts, seen)
            if self.engine.dialect.name == "postgresql":
                connection.execute(sa.text(f"ANALYZE {self.engine.dialect.identifier_preparer.format_table(seen)}"))
            if reconcile:
                self._reconcile(
                    connection, seen, datetime.now(timezone.utc), counts, reconcile_range, reconcile_sources
                )
                if self.engine.dialect.name == "postgresql":  # the reads of the whole dataset: let it scan
                    connection.execute(sa.text("SET LOCAL enable_seqscan = on"))
            self._count_unchanged(connection, seen, counts)
            seen.drop(connection)
            connection.execute(self.tables[LOADS.name].insert(), loads_row(info, counts, started))
            if self.bi_view:
                self.refresh_view(connection)
        return counts

    def view_labels(self, connection: Connection) -> list[str]:
        """The labels of the wide view: every label a comment not marked deleted has (assigned or predicted), sorted."""
        labels = self.tables["comment_labels"]
        query = (
            sa.select(labels.c.label)
            .where(labels.c[DELETED_AT].is_(None), labels.c.kind.in_(("assigned", "predicted")))
            .distinct()
            .order_by(labels.c.label)
        )
        return list(connection.execute(query).scalars())

    def refresh_view(self, connection: Connection) -> str | None:
        """Create (or replace) the wide view for BI tools, ``<prefix>comment_label_probabilities``.

        One row per comment not marked deleted, its fields, then one column per label of
        :meth:`view_labels` with its predicted probability, 0 where not predicted
        (:mod:`~airflow_provider_cm.pipelines.warehouse.bi_view`). Labels that would share a column
        (names differing only in case) leave the view as it was, with a warning naming them.

        :return: the view's name, or ``None`` when it was left as it was.
        """
        try:
            statements = wide_view_ddl(
                self.engine.dialect, self.view_labels(connection), prefix=self.prefix, schema=self.schema
            )
        except ValueError as error:
            _LOG.warning("The BI view was left as it was: %s", error)
            return None
        for statement in statements:
            connection.execute(sa.text(statement))
        return f"{self.prefix}{VIEW_NAME}"
