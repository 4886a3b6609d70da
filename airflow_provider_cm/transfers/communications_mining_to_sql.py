"""Communications Mining straight into a SQL table of any common-sql connection.

* :class:`CommunicationsMiningToSqlOperator`: a dataset's comments for the data interval, one row
  per comment keyed by ``uid``; a rerun of the window replaces the window's rows.
* :class:`CommunicationsMiningStreamToSqlOperator`: a stream drained batch after batch, each
  batch upserted and committed before the stream is advanced past it: exactly once in effect.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAlias

from airflow_provider_cm.api.labels import LEVEL_SEPARATOR
from airflow_provider_cm.api.times import api_time
from airflow_provider_cm.client.export_slices import DEFAULT_EXPORT_CONCURRENCY, check_concurrency
from airflow_provider_cm.client.windows import check_order_by, export_window, window_key
from airflow_provider_cm.common import lineage
from airflow_provider_cm.common.assets import outlet_for, record_outlet_events, table_asset
from airflow_provider_cm.common.warehouse import (
    DEFAULT_LOOKBACK_DAYS,
    check_mode,
    check_model_version,
    choose_mode,
    context_value,
    load_result,
    mode_range,
)
from airflow_provider_cm.common.workers import warn_if_worker_local_database
from airflow_provider_cm.exceptions import warn_deprecated
from airflow_provider_cm.hooks.communications_mining import MAX_EXPORT_LIMIT, MAX_STREAM_FETCH, split_full_name
from airflow_provider_cm.hooks.window_export import WindowExport
from airflow_provider_cm.operators.base import CommunicationsMiningBaseOperator
from airflow_provider_cm.pipelines.stream_drain import DrainWriter, StreamBatch, StreamDrain
from airflow_provider_cm.pipelines.warehouse.flat_comments import EXPORT_COLUMNS, flatten_exported_comment
from airflow_provider_cm.pipelines.warehouse.freshness import (
    DEFAULT_PREDICTION_THRESHOLD,
    load_dataset,
    resolve_version,
)
from airflow_provider_cm.pipelines.warehouse.model import DATA_TABLES, TABLES, TableSpec
from airflow_provider_cm.pipelines.warehouse.sql_tables import table_name
from airflow_provider_cm.pipelines.warehouse.sql_writer import SqlWarehouse
from airflow_provider_cm.transfers.sql_table import (
    CommentTable,
    check_table_name,
    create_sqlite_folder,
    error_reason,
    is_templated,
    refuses_row,
    sql_hook,
)

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

#: The stream transfer's columns.
STREAM_COLUMNS = (
    "uid",
    "comment_id",
    "timestamp",
    "body",
    "predicted_labels",
    "top_label",
    "top_probability",
    "sequence_id",
)

#: Column types that are not TEXT, when the stream transfer creates its table.
STREAM_COLUMN_TYPES = {"top_probability": "DOUBLE PRECISION"}


def _declare_table_outlet(kwargs: dict[str, Any], sql_conn_id: str, table: str, *, alias: bool = False) -> None:
    """Default the outlets to the table's Asset; an AssetAlias when the table or connection is
    templated, or when ``alias`` (an alias records an event only in the runs that add one)."""
    if kwargs.get("outlets"):
        return
    task_id = str(kwargs.get("task_id"))
    if alias:
        kwargs["outlets"] = [AssetAlias(name=f"communications_mining_table:{task_id}")]
        return
    kwargs["outlets"] = [outlet_for("table", task_id, [sql_conn_id, table], lambda: table_asset(sql_conn_id, table))]


#: The typed tables' default name prefix (``cm_comments``, ``cm_comment_labels``, ...).
DEFAULT_TABLE_PREFIX = "cm_"


def typed_table_names(schema: str | None, prefix: str) -> list[str]:
    """The typed layout's tables as written, ``[schema.]<prefix><table>``, data tables first, ``loads`` last.

    :raises ValueError: if the schema or prefix makes a name that is not a plain SQL identifier.
    """
    names = [f"{schema}.{table_name(spec, prefix)}" if schema else table_name(spec, prefix) for spec in TABLES]
    for name in names:
        try:
            check_table_name(name)
        except ValueError:
            raise ValueError(
                f"schema {schema!r} and table_prefix {prefix!r} make the table name {name!r}: each must be "
                "letters, digits and underscores (the schema not starting with a digit)"
            ) from None
    return names


#: The SQL-standard name of each kind of the typed model (the lineage schema facet; each database's own
#: type is SQLAlchemy's for its dialect, see :mod:`airflow_provider_cm.pipelines.warehouse.sql_tables`).
STANDARD_TYPES = {
    "text": "TEXT",
    "integer": "BIGINT",
    "double": "DOUBLE PRECISION",
    "boolean": "BOOLEAN",
    "time": "TIMESTAMP WITH TIME ZONE",
    "json": "JSON",
}


def typed_column_types(spec: TableSpec) -> dict[str, str]:
    """A typed table's columns and their SQL-standard types (for the lineage schema facet)."""
    return {column.name: STANDARD_TYPES[column.kind] for column in spec.columns}


def _declare_typed_outlets(kwargs: dict[str, Any], sql_conn_id: str, schema: str | None, prefix: str) -> None:
    """Default the outlets to one Asset per typed table; an AssetAlias when a name is templated."""
    if kwargs.get("outlets"):
        return
    if any(is_templated(value) for value in (sql_conn_id, schema, prefix)):
        kwargs["outlets"] = [AssetAlias(name=f"communications_mining_table:{kwargs.get('task_id')}")]
        return
    kwargs["outlets"] = [table_asset(sql_conn_id, name) for name in typed_table_names(schema, prefix)]


def _checked_table(table: str) -> str:
    """A table name checked when the DAG is parsed, unless it is a template (checked when rendered)."""
    return table if is_templated(table) else check_table_name(table)


def warehouse_hook(task: Any) -> DbApiHook:
    """The common-sql hook of ``task.sql_conn_id``; a warning when it is a SQLite file under several workers.

    A SQLite file's missing folder is created (and logged), as the file export creates its own.
    """
    hook = sql_hook(task.sql_conn_id)
    warn_if_worker_local_database(task, hook, task.sql_conn_id)
    folder = create_sqlite_folder(hook)
    if folder is not None:
        task.log.info("Created %s, the folder of the SQLite database of connection %r", folder, task.sql_conn_id)
    return hook


class CommunicationsMiningToSqlOperator(CommunicationsMiningBaseOperator):
    """Load a dataset's comments into typed warehouse tables of any common-sql connection.

    Calls ``POST /api/v1/datasets/<project>/<dataset>/export``
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/export-a-dataset)
    page by page, following ``continuation`` to the end (with ``export_concurrency`` above 1, the
    default 8, in time slices exported that many at a time); with ``model_version``, also
    ``GET /api/v1/datasets/<project>/<dataset>/model-tags``
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/model-tags)
    to resolve a tag and ``POST .../labellers/<version>/predict-comments``
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/predict-comments)
    for each page's predictions.

    **The typed layout** (the default; :doc:`/warehouse`): the tables ``<prefix>comments``
    (one row per comment keyed by ``uid``, times as ``TIMESTAMP WITH TIME ZONE``),
    ``<prefix>comment_labels`` (assigned, dismissed and predicted labels with their levels,
    probability, sentiment, ``model_version`` and ``metadata``), ``<prefix>comment_entities``,
    ``<prefix>comment_user_properties`` and ``<prefix>loads`` (one row per load), types from
    SQLAlchemy through the connection's ``get_sqlalchemy_engine()``. Every data row carries
    ``_cm_load_id``, ``_cm_extracted_at``, ``_cm_row_hash`` and ``_cm_deleted_at``. A load merges
    by key and writes only rows whose hash changed, in **one transaction**: a failed load leaves
    the tables as the previous load left them. Tables are created and missing columns added;
    an existing column that cannot hold the model fails the task before anything is written.

    What a load reads (``mode``; the costs are in :doc:`/warehouse`):

    * ``"window"``: the comments whose ``timestamp`` lies in ``[start, end)`` (default the data
      interval), each as first seen;
    * ``"lookback"``: ``[start - lookback_days, end)``: labels added and predictions changed
      within ``lookback_days`` arrive;
    * ``"reconcile"``: the whole dataset (or ``[start, end)`` if given), and every comment not
      seen any more marked deleted (``_cm_deleted_at``; never a hard delete).

    With ``model_version`` (a pinned number, or a tag such as ``"live"`` resolved once per load),
    predictions come from ``predict-comments`` on that version and every predicted row names it;
    without it the export's latest predictions are loaded with a null ``model_version``. When
    the version differs from the last load's (the tag moved to a retrained model), a window or
    lookback load becomes a reconcile of the whole dataset, and says so in its log and XCom
    (``reconcile_on_model_change=False`` keeps the mode asked for).

    **The flat layout** (0.1; deprecated, removed in 0.3): with ``table`` given, one text table
    of the flat CSV export's columns whose window of rows is replaced each run, as in 0.1; it
    warns :class:`~airflow.exceptions.AirflowProviderDeprecationWarning` when the DAG is parsed.

    :param dataset: ``"project/dataset"``. Templated.
    :param sql_conn_id: an Airflow connection whose hook is a common-sql ``DbApiHook`` (postgres,
        sqlite, mysql, snowflake, duckdb, ...). Templated.
    :param schema: the database schema of the typed tables (default: the connection's). Templated.
    :param table_prefix: put before every typed table's name (default ``"cm_"``: ``cm_comments``,
        ``cm_comment_labels``, ...); letters, digits and underscores. Templated.
    :param mode: ``"window"`` (default), ``"lookback"`` or ``"reconcile"`` (see above).
    :param lookback_days: with ``"lookback"``, days re-read before the window (default 7).
    :param model_version: a pinned model version (``int``) or a tag (``"live"``); ``None``: the
        export's predictions, with a null version. Templated.
    :param reconcile_on_model_change: reconcile the whole dataset when ``model_version`` is not
        the version of the last load (default ``True``).
    :param prediction_threshold: the lowest probability of a predicted label loaded from
        ``predict-comments`` (default 0.01).
    :param start: window start (datetime or ISO-8601), inclusive; default the data interval
        start (with ``"reconcile"``: unbounded). Templated.
    :param end: window end, exclusive; default the data interval end. Templated.
    :param source_ids: only comments of these source ids. Templated.
    :param page_size: comments per export request, 1 to 256.
    :param export_concurrency: time slices exported at once, 1 to 64 (1: one serial chain).
    :param table: **deprecated** (the flat layout): ``table`` or ``schema.table``. Templated.
    :param order_by: the flat layout only: ``"timestamp"`` or ``"created_at"``.
    :param communications_mining_conn_id: the Communications Mining connection.
    :param retry_max_attempts: attempts per API request (default: the connection's, else 5).
    :param retry_max_elapsed: seconds per API request across attempts (default: the connection's, else 300).
    :return: (XCom; each key also its own XCom) typed layout: ``{"dataset", "tables", "schema",
        "mode", "requested_mode", "mode_reason", "load_id", "start", "end", "model_version",
        "rows_read", "pages", "rows_written", "rows_unchanged", "rows_marked_deleted",
        "by_table"}``: ``rows_read`` comments read from the API, ``rows_written`` rows inserted or
        updated in all tables, ``rows_unchanged`` rows whose hash was already stored,
        ``rows_marked_deleted`` rows given a ``_cm_deleted_at``, ``by_table`` the same per table;
        ``start``/``end`` the range read (``None``: unbounded). Flat layout: ``{"table",
        "dataset", "start", "end", "order_by", "rows_written", "rows_deleted", "pages",
        "table_created"}``.

    Outlets: one Asset per typed table (:func:`~airflow_provider_cm.common.assets.table_asset`,
    ``communications-mining-sql://<sql_conn_id>/<schema.prefix+table>``; an AssetAlias when the
    connection, schema or prefix is templated), each event carrying the result in its ``extra``.

    :raises ValueError: for a bad window, mode, name or argument (before anything is read or written).
    :raises TypeError: if ``sql_conn_id`` is not a SQL database connection.
    :raises WarehouseSchemaError: if an existing table cannot hold the typed model (naming the
        column and the fix), or the tables hold another dataset's loads (one dataset per schema or
        ``table_prefix``); nothing is written.
    :raises CommunicationsMiningTagError: if ``model_version`` is a tag that cannot be resolved.
    :raises CommunicationsMiningApiError: if the API fails after retries (the transaction is rolled back).
    """

    template_fields: Sequence[str] = (
        "dataset",
        "sql_conn_id",
        "schema",
        "table_prefix",
        "table",
        "start",
        "end",
        "source_ids",
        "model_version",
    )
    ui_color = "#e8f0fe"
    ui_fgcolor = "#000000"
    returns_mapping = True

    def __init__(
        self,
        *,
        dataset: str,
        sql_conn_id: str,
        schema: str | None = None,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        mode: str = "window",
        lookback_days: int = DEFAULT_LOOKBACK_DAYS,
        model_version: int | str | None = None,
        reconcile_on_model_change: bool = True,
        prediction_threshold: float = DEFAULT_PREDICTION_THRESHOLD,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        source_ids: Sequence[str] | None = None,
        page_size: int = MAX_EXPORT_LIMIT,
        export_concurrency: int = DEFAULT_EXPORT_CONCURRENCY,
        table: str | None = None,
        order_by: str = "timestamp",
        **kwargs: Any,
    ) -> None:
        check_order_by(order_by)
        check_concurrency(export_concurrency)
        check_mode(mode, lookback_days, prediction_threshold)
        if not 1 <= page_size <= MAX_EXPORT_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_EXPORT_LIMIT}, got {page_size}")
        if table is not None:
            if schema is not None or table_prefix != DEFAULT_TABLE_PREFIX:
                raise ValueError(
                    "schema and table_prefix name the typed layout's tables; table (the deprecated flat layout) "
                    "takes its schema as 'schema.table'"
                )
            if mode != "window" or model_version is not None:
                raise ValueError(
                    "table is the deprecated flat layout, which loads windows only: for mode or model_version "
                    "use the typed layout (leave table out; schema and table_prefix name its tables)"
                )
            warn_deprecated(
                "CommunicationsMiningToSqlOperator(table=...), the flat one-table layout,",
                "the typed layout (leave table out; see docs/warehouse.md)",
                stacklevel=4,
            )
            _declare_table_outlet(kwargs, sql_conn_id, table)
        else:
            if order_by != "timestamp":
                raise ValueError("order_by='created_at' is the flat layout's; the typed layout reads by timestamp")
            _declare_typed_outlets(kwargs, sql_conn_id, schema, table_prefix)
        super().__init__(**kwargs)
        self.dataset = dataset
        self.sql_conn_id = sql_conn_id
        self.schema = schema
        self.table_prefix = table_prefix
        self.mode = mode
        self.lookback_days = lookback_days
        self.model_version = check_model_version(model_version)
        self.reconcile_on_model_change = reconcile_on_model_change
        self.prediction_threshold = prediction_threshold
        self.table = _checked_table(table) if table is not None else None
        self.start = start
        self.end = end
        self.order_by = order_by
        self.source_ids = source_ids
        self.page_size = page_size
        self.export_concurrency = export_concurrency
        if not is_templated(schema) and not is_templated(table_prefix):
            typed_table_names(schema, table_prefix)

    @property
    def hook_pool_size(self) -> int:  # type: ignore[override]
        return max(16, self.export_concurrency)

    @lineage.records_result
    def execute(self, context: Context) -> dict[str, Any]:
        split_full_name(self.dataset, "dataset")
        if self.table is None:
            return self._execute_typed(context)
        return self._execute_flat(context)

    # -- the typed layout -------------------------------------------------------------------------

    def _execute_typed(self, context: Context) -> dict[str, Any]:
        names = typed_table_names(self.schema, self.table_prefix)
        requested = mode_range(self.mode, self.start, self.end, context)
        version = resolve_version(self.hook, self.dataset, self.model_version)
        database = warehouse_hook(self)
        engine = database.get_sqlalchemy_engine()
        try:
            warehouse = SqlWarehouse(engine, schema=self.schema or None, prefix=self.table_prefix)
            last = warehouse.last_load(self.dataset) if version is not None and self.reconcile_on_model_change else None
            choice = choose_mode(
                self.mode,
                *requested,
                version=version,
                last_version=last.model_version if last is not None else None,
                has_loads=last is not None,
            )
            if choice.reason:
                self.log.info("Reconciling instead of a %s load: %s", self.mode, choice.reason)
            self.log.info(
                "Loading %s (%s, %s) into the typed tables %s of connection %s, predictions of %s",
                self.dataset,
                choice.mode,
                _range_text(choice.start, choice.end, choice.mode, self.lookback_days),
                ", ".join(names),
                self.sql_conn_id,
                f"model version {version}" if version is not None else "the export (no version)",
            )
            info, counts = load_dataset(
                self.hook,
                warehouse,
                self.dataset,
                mode=choice.mode,
                start=choice.start,
                end=choice.end,
                lookback_days=self.lookback_days,
                model_version=version,
                page_size=self.page_size,
                prediction_threshold=self.prediction_threshold,
                export_concurrency=self.export_concurrency,
                source_ids=list(self.source_ids) if self.source_ids else None,
                dag_id=context_value(context, "dag_id"),
                run_id=context_value(context, "run_id"),
                task_id=self.task_id,
            )
        finally:
            engine.dispose()
        result = load_result(
            dataset=self.dataset,
            mode=choice.mode,
            requested_mode=self.mode,
            reason=choice.reason,
            info=info,
            counts=counts,
            start=info.window_start,
            end=info.window_end,
            extra={"tables": names, "schema": self.schema or None},
        )
        self.log.info(
            "Committed load %s of %s: %d comments read in %d pages; %d rows written, %d unchanged, "
            "%d marked deleted (all tables)",
            info.load_id,
            self.dataset,
            counts.rows_read,
            counts.pages,
            counts.rows_written,
            counts.rows_unchanged,
            counts.rows_marked_deleted,
        )
        self._record_typed_events(context, names, result)
        return result

    def _record_typed_events(self, context: Context, names: list[str], result: dict[str, Any]) -> None:
        """Each Asset outlet's event gets the result; an AssetAlias gets one event per table."""
        for outlet in self.outlets:
            for name in names if isinstance(outlet, AssetAlias) else names[:1]:
                record_outlet_events([outlet], context, table_asset(self.sql_conn_id, name), result)

    # -- the flat layout (deprecated) -------------------------------------------------------------

    def _execute_flat(self, context: Context) -> dict[str, Any]:
        assert self.table is not None
        check_table_name(self.table)
        start, end = export_window(self.start, self.end, context)
        sources = list(self.source_ids or self.hook.get_dataset(self.dataset).get("source_ids") or [])
        self.log.info(
            "Loading %s, %s in [%s, %s), into table %s of connection %s (the flat layout, deprecated)",
            self.dataset,
            self.order_by,
            api_time(start),
            api_time(end),
            self.table,
            self.sql_conn_id,
        )
        result: dict[str, Any] = {
            "table": self.table,
            "dataset": self.dataset,
            "start": api_time(start),
            "end": api_time(end),
            "order_by": self.order_by,
        }
        with CommentTable(warehouse_hook(self), self.table, EXPORT_COLUMNS) as table:
            result["table_created"] = table.ensure()
            result["rows_deleted"] = table.delete_window(self.order_by, api_time(start), api_time(end), sources)
            result["rows_written"], result["pages"] = self._write_window(table, start, end)
            table.commit()
        self.log.info(
            "Committed %d rows of %s into %s (%d rows of the window deleted first)",
            result["rows_written"],
            self.dataset,
            self.table,
            result["rows_deleted"],
        )
        record_outlet_events(self.outlets, context, table_asset(self.sql_conn_id, self.table), result)
        return result

    def _write_window(self, table: CommentTable, start: datetime, end: datetime) -> tuple[int, int]:
        """Upsert the window's comments page by page, uncommitted; return (rows, pages)."""
        written = pages = logged = 0
        for rows in WindowExport(
            self.hook,
            self.dataset,
            start,
            end,
            order_by=self.order_by,
            source_ids=self.source_ids,
            page_size=self.page_size,
            concurrency=self.export_concurrency,
            transform=self._rows,
        ):
            table.upsert(rows)
            written += len(rows)
            pages += 1
            if written - logged >= 10_000:
                logged = written
                self.log.info("Written %d rows so far (not committed yet)", written)
        return written, pages

    @classmethod
    def _rows(cls, page: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """A page's rows (run in the export's worker threads when the window is sliced)."""
        return [cls._row(exported) for exported in page]

    @staticmethod
    def _row(exported: dict[str, Any]) -> tuple[Any, ...]:
        flat = flatten_exported_comment(exported)
        flat["timestamp"] = window_key(flat["timestamp"])
        flat["created_at"] = window_key(flat["created_at"])
        return tuple(flat[column] for column in EXPORT_COLUMNS)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the dataset read; the tables written, with their columns and the rows written.

        Names as in :mod:`airflow_provider_cm.common.lineage` (the tables' as common-sql names them);
        called by the OpenLineage listener. The typed layout's row count is of all its tables.
        """
        database = sql_hook(self.sql_conn_id)
        result = lineage.task_result(self)
        if self.table is not None:
            table = lineage.table_dataset(database, self.table, dict.fromkeys(EXPORT_COLUMNS, "TEXT"))
            outputs = [lineage.written(table, lineage.count(result, "rows_written"))]
        else:
            by_table = result.get("by_table") if isinstance(result, Mapping) else None
            outputs = [
                lineage.written(
                    lineage.table_dataset(database, name, typed_column_types(spec)),
                    lineage.count((by_table or {}).get(spec.name), "written"),
                )
                for spec, name in zip(DATA_TABLES, typed_table_names(self.schema, self.table_prefix), strict=False)
            ]
        return lineage.operator_lineage(inputs=[lineage.cm_dataset(self.hook, self.dataset)], outputs=outputs)


def _range_text(start: datetime | None, end: datetime | None, mode: str, lookback_days: int) -> str:
    if start is None and end is None:
        return "the whole dataset"
    text = f"[{api_time(start) if start else '-inf'}, {api_time(end) if end else '+inf'})"
    return f"{text} and the {lookback_days} days before" if mode == "lookback" else text


def stream_row(result: Mapping[str, Any]) -> tuple[Any, ...]:
    """One fetched stream result as a row of :data:`STREAM_COLUMNS`.

    ``body`` is the text of the comment's messages (joined by a blank line); ``predicted_labels``
    a JSON list of ``{"name": "Parent > Child", "probability", ...}``; ``top_label`` and
    ``top_probability`` the most probable of the most specific labels predicted (a parent label
    is at least as probable as its children, so the deepest level is the informative one).
    """
    comment = result.get("comment") or {}
    messages = comment.get("messages") or []
    body = "\n\n".join(m["body"]["text"] for m in messages if isinstance(m.get("body"), dict) and m["body"].get("text"))
    labels = list(result.get("labels") or [])
    depth = max((str(label.get("name", "")).count(LEVEL_SEPARATOR) for label in labels), default=0)
    deepest = [label for label in labels if str(label.get("name", "")).count(LEVEL_SEPARATOR) == depth]
    top = max(deepest, key=lambda label: float(label.get("probability") or 0.0), default=None)
    return (
        comment.get("uid"),
        comment.get("id"),
        comment.get("timestamp"),
        body,
        json.dumps(labels, ensure_ascii=False),
        top.get("name") if top else None,
        float(top["probability"]) if top and top.get("probability") is not None else None,
        result.get("sequence_id"),
    )


class CommunicationsMiningStreamToSqlOperator(CommunicationsMiningBaseOperator):
    """Drain a stream into a SQL table, batch by batch, exactly once in effect.

    Calls ``POST /api/v1/datasets/<project>/<dataset>/streams/<stream>/fetch``
    (https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/fetch-comments-from-a-stream-legacy.md),
    ``.../advance``
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/advance-a-stream)
    and, for rows the database refuses, ``PUT .../exceptions``
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/tag-an-exception).

    For each batch of up to ``batch_size`` results, in this order:

    1. the batch is upserted by ``uid`` in one transaction and committed (the commit is the
       downstream success);
    2. rows the database refuses (an integrity or data error: a ``CHECK``, ``NOT NULL`` or type
       the table imposes) are found by bisecting the batch, left out, and tagged as exceptions of
       the stream with the database's reason (``"Refused by <table>: <reason>"``);
    3. only then is the stream advanced to the batch's ``sequence_id``.

    Batches holding only comments the stream's filter drops are advanced past (they do not count
    as batches). The task goes on until the stream is caught up, ``max_results`` results were
    handled or ``max_batches`` batches were committed: ``max_batches=1`` takes exactly one batch
    per run, as a DAG scheduled by
    :class:`~airflow_provider_cm.triggers.streams.CommunicationsMiningStreamEventTrigger` wants
    (one run for each batch the trigger fired for; give both the same ``batch_size``). A failure at any
    point (the database, the API after retries, the worker) leaves the stream at the last batch
    committed, so the next run fetches the rest and the upsert makes any redelivery harmless:
    nothing lost, nothing duplicated. A database failure that is not a refused row (connection
    lost, table missing) fails the task.

    The table (created when missing, ``uid`` primary key): :data:`STREAM_COLUMNS` = ``uid,
    comment_id, timestamp, body`` (the messages' text), ``predicted_labels`` (JSON),
    ``top_label``, ``top_probability`` (a number), ``sequence_id``.

    :param dataset: ``"project/dataset"``. Templated.
    :param stream: the stream's name. Templated.
    :param sql_conn_id: an Airflow connection whose hook is a common-sql ``DbApiHook``. Templated.
    :param table: ``table`` or ``schema.table`` (letters, digits, underscores; refused when the DAG
        is parsed otherwise). Templated.
    :param max_results: most results (comments) to handle in one run.
    :param max_batches: most batches (with results) to commit and advance past in one run, at
        least 1; ``None`` (the default) drains until caught up or ``max_results``.
    :param batch_size: comments per fetch and per transaction, 1 to 1,024.
    :param communications_mining_conn_id: the Communications Mining connection.
    :param retry_max_attempts: attempts per API request (default: the connection's, else 5).
    :param retry_max_elapsed: seconds per API request across attempts (default: the connection's, else 300).
    :return: (XCom; each key also its own XCom) ``{"table", "dataset", "stream", "rows_written",
        "batches", "refused_uids", "filtered", "sequence_id", "caught_up"}``: ``rows_written`` rows
        committed, ``batches`` batches committed and acknowledged, ``refused_uids`` comments left
        out and tagged, ``filtered`` comments the stream's filter skipped, ``sequence_id`` the last
        position advanced to (``None`` if none), ``caught_up`` whether the stream was drained
        (false when the run stopped at ``max_results`` or ``max_batches`` before the end).

    The outlet is an ``AssetAlias("communications_mining_table:<task_id>")`` that resolves to the
    table's Asset (:func:`~airflow_provider_cm.common.assets.table_asset`) only in a run that committed
    rows: a DAG scheduled on the table runs when new rows landed, not after every empty drain.

    :raises ValueError: for a bad table name or argument.
    :raises TypeError: if ``sql_conn_id`` is not a SQL database connection.
    :raises CommunicationsMiningApiError: if the API fails after retries (committed batches stay,
        the stream stays at the last one acknowledged).
    """

    template_fields: Sequence[str] = ("dataset", "stream", "sql_conn_id", "table")
    ui_color = "#e8f0fe"
    ui_fgcolor = "#000000"
    returns_mapping = True

    def __init__(
        self,
        *,
        dataset: str,
        stream: str,
        sql_conn_id: str,
        table: str,
        max_results: int = 100_000,
        max_batches: int | None = None,
        batch_size: int = MAX_STREAM_FETCH,
        **kwargs: Any,
    ) -> None:
        if not 1 <= batch_size <= MAX_STREAM_FETCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_STREAM_FETCH}, got {batch_size}")
        if max_results < 1:
            raise ValueError("max_results must be at least 1")
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be at least 1 or None, got {max_batches}")
        _declare_table_outlet(kwargs, sql_conn_id, table, alias=True)
        super().__init__(**kwargs)
        self.dataset = dataset
        self.stream = stream
        self.sql_conn_id = sql_conn_id
        self.table = _checked_table(table)
        self.max_results = max_results
        self.max_batches = max_batches
        self.batch_size = batch_size

    @lineage.records_result
    def execute(self, context: Context) -> dict[str, Any]:
        split_full_name(self.dataset, "dataset")
        check_table_name(self.table)
        if not self.stream:
            raise ValueError("stream must be a stream name")
        totals: dict[str, Any] = {
            "table": self.table,
            "dataset": self.dataset,
            "stream": self.stream,
            "rows_written": 0,
            "batches": 0,
            "refused_uids": [],
            "filtered": 0,
            "sequence_id": None,
            "caught_up": False,
        }
        with CommentTable(warehouse_hook(self), self.table, STREAM_COLUMNS, STREAM_COLUMN_TYPES) as table:
            table.ensure()
            self._drain(table, totals)
        self.log.info(
            "Stream %s of %s: %d rows committed into %s in %d batches, %d refused; %s",
            self.stream,
            self.dataset,
            totals["rows_written"],
            self.table,
            totals["batches"],
            len(totals["refused_uids"]),
            "caught up" if totals["caught_up"] else self._stop_reason(totals),
        )
        if totals["rows_written"]:
            record_outlet_events(self.outlets, context, table_asset(self.sql_conn_id, self.table), totals)
        return totals

    def _stop_reason(self, totals: Mapping[str, Any]) -> str:
        if self.max_batches is not None and totals["batches"] >= self.max_batches:
            return f"stopped after max_batches={self.max_batches}; more may wait"
        return f"stopped at max_results={self.max_results}; more may wait"

    def _drain(self, table: CommentTable, totals: dict[str, Any]) -> None:
        """Drain the stream batch by batch into ``table`` (the one drain loop,
        :class:`~airflow_provider_cm.pipelines.stream_drain.StreamDrain`); fill ``totals``."""
        drain = StreamDrain(self.hook, self.dataset, self.stream, batch_size=self.batch_size, log=self.log)
        try:
            drain.drain(_TableWriter(self, table, totals), max_results=self.max_results, max_batches=self.max_batches)
        finally:
            done = drain.result
            totals.update(batches=done.batches, filtered=done.filtered, sequence_id=done.sequence_id)
            totals["caught_up"] = done.caught_up

    def _commit_batch(self, table: CommentTable, rows: list[tuple[Any, ...]]) -> dict[str, str]:
        """Upsert a batch in one transaction and commit it; return the refused rows' ``{uid: reason}``."""
        try:
            table.upsert(rows)
            table.commit()
            return {}
        except Exception as error:
            table.rollback()
            if not refuses_row(error):
                raise
            refused = table.find_refused(rows)  # raises an error that is not a refused row
            if not refused:
                raise
            self.log.warning(
                "The database refused %d of %d rows (found by bisecting the batch)", len(refused), len(rows)
            )
            try:
                table.upsert([row for row in rows if row[0] not in refused])
                table.commit()
            except Exception as again:
                table.rollback()
                raise RuntimeError(
                    f"table {self.table} accepts the rows of this batch one part at a time but refuses them "
                    f"together ({error_reason(again)}); nothing of the batch was committed and the stream "
                    "was not advanced"
                ) from again
        return refused

    def _tag_refused(self, refused: Mapping[str, str]) -> None:
        by_reason: dict[str, list[str]] = defaultdict(list)
        for uid, reason in refused.items():
            by_reason[f"Refused by {self.table}: {reason}"].append(uid)
        for exception_type, uids in by_reason.items():
            for start in range(0, len(uids), 1024):
                self.hook.tag_exceptions(self.dataset, self.stream, sorted(uids)[start : start + 1024], exception_type)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the stream read; the table written, with its columns and the rows committed.

        Names as in :mod:`airflow_provider_cm.common.lineage` (the table's as common-sql names it);
        called by the OpenLineage listener.
        """
        columns = {column: STREAM_COLUMN_TYPES.get(column, "TEXT") for column in STREAM_COLUMNS}
        table = lineage.table_dataset(sql_hook(self.sql_conn_id), self.table, columns)
        return lineage.operator_lineage(
            inputs=[lineage.stream_dataset(self.hook, self.dataset, self.stream)],
            outputs=[lineage.written(table, lineage.count(lineage.task_result(self), "rows_written"))],
        )


class _TableWriter(DrainWriter):
    """A stream drain's batches into a table: each batch upserted and committed, its refused rows
    tagged as exceptions of the stream, before the stream moves past it; the totals counted once it has."""

    def __init__(self, task: CommunicationsMiningStreamToSqlOperator, table: CommentTable, totals: dict[str, Any]):
        self.task = task
        self.table = table
        self.totals = totals
        self.rows = 0
        self.refused: Mapping[str, str] = {}

    def write(self, batch: StreamBatch) -> None:
        rows = [stream_row(result) for result in batch["results"]]
        self.refused = self.task._commit_batch(self.table, rows)
        self.task._tag_refused(self.refused)
        self.rows = len(rows)

    def advanced(self, batch: StreamBatch) -> None:
        committed = self.rows - len(self.refused)
        self.totals["rows_written"] += committed
        self.totals["refused_uids"] += sorted(self.refused)
        self.task.log.info(
            "Committed %d rows, %d refused, and advanced to %s", committed, len(self.refused), batch["sequence_id"]
        )
