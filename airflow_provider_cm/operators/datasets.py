"""Export a dataset's comments for a time window (by default the data interval) to JSONL, CSV or Parquet."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_cm.api.times import api_time
from airflow_provider_cm.client.export_slices import DEFAULT_EXPORT_CONCURRENCY, check_concurrency
from airflow_provider_cm.client.windows import check_order_by, export_window
from airflow_provider_cm.common import lineage
from airflow_provider_cm.common.assets import export_asset, outlet_for, record_outlet_events
from airflow_provider_cm.common.storage import atomic_write, path_as_given, to_storage_path
from airflow_provider_cm.common.warehouse import (
    DEFAULT_LOOKBACK_DAYS,
    check_mode,
    check_model_version,
    context_value,
    mode_range,
    parquet_file_name,
    whole_dataset_bounds,
)
from airflow_provider_cm.common.workers import warn_if_worker_local
from airflow_provider_cm.hooks.communications_mining import MAX_EXPORT_LIMIT, split_full_name
from airflow_provider_cm.hooks.window_export import WindowExport
from airflow_provider_cm.operators.base import CommunicationsMiningBaseOperator
from airflow_provider_cm.pipelines.warehouse.flat_comments import EXPORT_COLUMNS, flatten_exported_comment
from airflow_provider_cm.pipelines.warehouse.freshness import (
    DEFAULT_PREDICTION_THRESHOLD,
    ExportRange,
    export_range,
    export_rows,
    resolve_version,
)
from airflow_provider_cm.pipelines.warehouse.model import DATA_TABLES
from airflow_provider_cm.pipelines.warehouse.sql_writer import LoadCounts, LoadInfo, loads_row

#: What the export writes: the API's own JSON lines, the flat CSV, or the typed model in Parquet.
OUTPUT_FORMATS = ("jsonl", "csv", "parquet")

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context, ObjectStoragePath


class CommunicationsMiningExportDatasetOperator(CommunicationsMiningBaseOperator):
    """Export the comments of a dataset whose time falls in ``[start, end)`` to a JSONL or CSV file,
    or as the typed warehouse model in Parquet files.

    Calls ``POST /api/v1/datasets/<project>/<dataset>/export``
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/export-a-dataset)
    page by page (``limit`` up to 256), following ``continuation`` to the end. With
    ``export_concurrency`` above 1 (the default is 8) the window is cut into time slices, each its
    own ``continuation`` chain, exported that many at a time
    (:class:`~airflow_provider_cm.client.window_export.WindowExport`):
    the file is written slice after slice in time order and is byte for byte the file one chain
    writes, comments in the route's order (``order_by`` time; comments sharing a time in the
    route's own order, by ``uid`` on the emulator). Pages fetched ahead of the writer wait in
    temporary files; memory holds about a page per slice in flight.

    The window is half-open, ``start <= time < end``, although the API's ``to`` is inclusive: a
    comment exactly at ``end`` belongs to the next window, so consecutive runs export every
    comment once, none twice. ``start`` and ``end`` default to the run's data interval, so schedule
    the DAG with a timetable that has data intervals: ``CronDataIntervalTimetable("0 0 * * *",
    timezone="UTC")`` or ``DeltaDataIntervalTimetable(timedelta(days=1))`` (both in ``airflow.sdk``).
    In Airflow 3 a cron string such as ``"@daily"`` and a plain ``timedelta`` schedule make
    trigger timetables whose runs have no data interval (unless ``[scheduler]
    create_cron_data_intervals`` / ``create_delta_data_intervals`` is set), and the task then
    fails saying so; with those, or for manual runs, pass ``start`` and ``end``.

    The file is written to a temporary name beside ``output_path`` and moved into place only when
    complete: a failed or killed run never leaves a partial file, and a rerun replaces the file.
    The output is declared as an Asset (outlet) named after the dataset,
    ``Asset(name="communications_mining_export/<project>/<dataset>",
    uri="communications-mining://<project>/<dataset>")``, whose events carry the path, count and
    window in their ``extra``: schedule a downstream DAG on that Asset. When ``dataset`` is
    templated the outlet is an ``AssetAlias("communications_mining_export:<task_id>")`` that
    resolves at run time to the Asset of the rendered dataset.

    :param dataset: ``"project/dataset"``. Templated.
    :param output_path: local path or ``ObjectStoragePath`` URI, usually templated per run, e.g.
        ``s3://bucket/cm/{{ data_interval_start | ds }}.jsonl``. Templated.
    :param output_format: ``"jsonl"`` (one exported comment per line, exactly as the API returns
        it), ``"csv"`` (one flat row per comment, columns :data:`EXPORT_COLUMNS`) or
        ``"parquet"``: the typed warehouse model (:doc:`/warehouse`), ``output_path`` then being a
        folder that gets one file per table, ``<output_path>/<table>/<name>.parquet`` (tables
        ``comments``, ``comment_labels``, ``comment_entities``, ``comment_user_properties``,
        ``loads``; ``<name>`` is the window, ``20261001T000000Z_20261002T000000Z``, or
        ``snapshot_<end>`` for a reconcile of the whole dataset), all moved into place only when
        every table is written. Needs the ``parquet`` extra (pyarrow).
    :param mode: which comments are read: ``"window"`` (default: ``[start, end)``),
        ``"lookback"`` (``[start - lookback_days, end)``, so labels added within that many days
        arrive again) or ``"reconcile"`` (the whole dataset, or ``[start, end)`` if given: a full
        snapshot whose missing comments are deleted ones). See :doc:`/warehouse` for what each catches.
    :param lookback_days: with ``"lookback"``, days re-read before the window (default 7).
    :param model_version: Parquet only: predictions from ``predict-comments`` on this pinned
        version (``int``) or tag (``"live"``), every predicted row naming it; ``None``: the
        export's own predictions with a null version. Templated.
    :param prediction_threshold: Parquet with ``model_version``: the lowest probability loaded (default 0.01).
    :param start: window start (datetime or ISO-8601), inclusive; default the data interval start. Templated.
    :param end: window end, exclusive; default the data interval end. Templated.
    :param order_by: ``"timestamp"`` (the comment's own time) or ``"created_at"`` (upload time):
        the time the window applies to.
    :param source_ids: only comments of these source ids. Templated.
    :param page_size: comments per request, 1 to 256.
    :param export_concurrency: time slices exported at once, 1 to 64 (1: one serial chain).
    :param outlets: Assets to declare; default the dataset's export Asset (or an AssetAlias, see above).
    :param communications_mining_conn_id: the Airflow connection.
    :param retry_max_attempts: attempts per API request (default: the connection's, else 5).
    :param retry_max_elapsed: seconds per API request across attempts (default: the connection's, else 300).
    :return: (XCom) ``{"path", "count", "start", "end", "order_by", "dataset", "format"}``.
    :raises ValueError: for a bad window or argument.
    :raises CommunicationsMiningApiError: if the API fails after retries (no file is written); with
        slices, the message names the slice that failed, ``(export slice [<from>, <to>))``.
    """

    template_fields: Sequence[str] = ("dataset", "output_path", "start", "end", "source_ids", "model_version")
    returns_mapping = True

    def __init__(
        self,
        *,
        dataset: str,
        output_path: str,
        output_format: str = "jsonl",
        mode: str = "window",
        lookback_days: int = DEFAULT_LOOKBACK_DAYS,
        model_version: int | str | None = None,
        prediction_threshold: float = DEFAULT_PREDICTION_THRESHOLD,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        order_by: str = "timestamp",
        source_ids: Sequence[str] | None = None,
        page_size: int = MAX_EXPORT_LIMIT,
        export_concurrency: int = DEFAULT_EXPORT_CONCURRENCY,
        **kwargs: Any,
    ) -> None:
        check_concurrency(export_concurrency)
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
        check_mode(mode, lookback_days, prediction_threshold)
        if model_version is not None and output_format != "parquet":
            raise ValueError(
                "model_version needs output_format='parquet': JSONL and CSV keep the export's own predictions"
            )
        check_order_by(order_by)
        if not 1 <= page_size <= MAX_EXPORT_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_EXPORT_LIMIT}, got {page_size}")
        if not kwargs.get("outlets"):
            kwargs["outlets"] = [
                outlet_for("export", str(kwargs.get("task_id")), [dataset], lambda: export_asset(dataset))
            ]
        super().__init__(**kwargs)
        self.dataset = dataset
        self.output_path = output_path
        self.output_format = output_format
        self.mode = mode
        self.lookback_days = lookback_days
        self.model_version = check_model_version(model_version)
        self.prediction_threshold = prediction_threshold
        self.start = start
        self.end = end
        self.order_by = order_by
        self.source_ids = source_ids
        self.page_size = page_size
        self.export_concurrency = export_concurrency

    @property
    def hook_pool_size(self) -> int:  # type: ignore[override]
        return max(16, self.export_concurrency)

    #: The Asset of a dataset's exports (see :func:`airflow_provider_cm.common.assets.export_asset`).
    export_asset = staticmethod(export_asset)

    def window(self, context: Context) -> tuple[datetime, datetime]:
        """``(start, end)`` in UTC: the operator's arguments, else the run's data interval.

        :raises ValueError: if neither gives a window, or the window is empty or reversed (see
            :func:`~airflow_provider_cm.client.windows.export_window`).
        """
        return export_window(self.start, self.end, context)

    def _page_text(self, page: list[dict[str, Any]]) -> tuple[int, str]:
        """A page as the file's text (JSON lines or CSV rows) and its number of comments.

        Runs in the export's worker threads: each call writes into its own buffer.
        """
        buffer = io.StringIO()
        if self.output_format == "csv":
            writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
            for exported in page:
                writer.writerow(flatten_exported_comment(exported))
        else:
            for exported in page:
                buffer.write(json.dumps(exported, ensure_ascii=False, separators=(",", ":")))
                buffer.write("\n")
        return len(page), buffer.getvalue()

    def read_range(self, context: Context) -> tuple[ExportRange, datetime | None, datetime | None]:
        """``(span, start, end)``: what is exported, and the range the mode was given.

        ``start``/``end`` are the window (or a reconcile's range; ``None`` when it is the whole
        dataset); ``span`` what is exported: ``start`` less ``lookback_days`` with ``lookback``,
        open sides for a whole-dataset reconcile (the export finds the dataset's own bounds).
        """
        start, end = mode_range(self.mode, self.start, self.end, context)
        return export_range(self.mode, start, end, lookback_days=self.lookback_days), start, end

    @lineage.records_result
    def execute(self, context: Context) -> dict[str, Any]:
        split_full_name(self.dataset, "dataset")
        span, start, end = self.read_range(context)
        low, high = whole_dataset_bounds(span.start, span.end)
        target = to_storage_path(self.output_path)
        warn_if_worker_local(self, target, "output_path")
        self.log.info(
            "Exporting %s (%s), %s in [%s, %s), to %s as %s, %d time slice(s) at a time",
            self.dataset,
            self.mode,
            self.order_by,
            api_time(low),
            api_time(high),
            target,
            self.output_format,
            self.export_concurrency,
        )
        if self.output_format == "parquet":
            result = self._export_parquet(context, target, start, end)
        else:
            result = {
                "path": path_as_given(self.output_path),
                "count": self._export_file(target, span.start, span.end),
                "start": api_time(low),
                "end": api_time(high),
                "order_by": self.order_by,
                "dataset": self.dataset,
                "format": self.output_format,
                "mode": self.mode,
            }
        record_outlet_events(self.outlets, context, export_asset(self.dataset), result)
        return result

    def _export_file(self, target: ObjectStoragePath, low: datetime | None, high: datetime | None) -> int:
        """Write the JSONL or CSV file of ``[low, high)`` (``None``: open) atomically; return the comments written."""
        count = 0
        logged = 0
        with atomic_write(target) as handle:
            header = io.StringIO()
            if self.output_format == "csv":
                csv.DictWriter(header, fieldnames=EXPORT_COLUMNS, lineterminator="\n").writeheader()
            head = header.getvalue()
            # One write per page: each write to an ObjectStoragePath file has a fixed cost.
            for size, text in WindowExport(
                self.hook,
                self.dataset,
                low,
                high,
                order_by=self.order_by,
                source_ids=self.source_ids,
                page_size=self.page_size,
                concurrency=self.export_concurrency,
                transform=self._page_text,
            ):
                handle.write(head + text)
                head = ""
                count += size
                if count - logged >= 10000:
                    logged = count
                    self.log.info("Exported %d comments so far", count)
            handle.write(head)
        self.log.info("Exported %d comments of %s to %s", count, self.dataset, target)
        return count

    def _export_parquet(
        self, context: Context, target: ObjectStoragePath, start: datetime | None, end: datetime | None
    ) -> dict[str, Any]:
        """Write the typed model's Parquet files of the range (see the class); return the XCom."""
        from airflow_provider_cm.pipelines.warehouse.parquet import ParquetWindowWriter

        version = resolve_version(self.hook, self.dataset, self.model_version)
        name = parquet_file_name(start, end, context.get("data_interval_end"))
        span = export_range(self.mode, start, end, lookback_days=self.lookback_days)
        info = LoadInfo(
            load_id=uuid.uuid4().hex,
            dataset=self.dataset,
            mode=self.mode,
            dag_id=context_value(context, "dag_id"),
            run_id=context_value(context, "run_id"),
            task_id=self.task_id,
            model_version=version,
            window_start=span.start,
            window_end=span.end,
        )
        counts = LoadCounts()
        started = datetime.now(timezone.utc)
        with ParquetWindowWriter(target, name) as writer:
            pages = export_rows(
                self.hook,
                self.dataset,
                mode=self.mode,
                start=start,
                end=end,
                lookback_days=self.lookback_days,
                model_version=version,
                page_size=self.page_size,
                export_concurrency=self.export_concurrency,
                prediction_threshold=self.prediction_threshold,
                load_id=info.load_id,
                source_ids=list(self.source_ids) if self.source_ids else None,
            )
            for rows in pages:
                writer.write(rows)
                counts.rows_read += len(rows.uids)
                counts.pages += 1
            written = dict(writer.rows_written)
            for table, rows_of_table in written.items():
                counts.add(table, "written", rows_of_table)
            writer.write_loads([loads_row(info, counts, started)])
        files = {table: path_as_given(self.output_path, path) for table, path in writer.paths.items()}
        self.log.info(
            "Wrote %d comments of %s (%s, predictions of %s) as Parquet: %s",
            counts.rows_read,
            self.dataset,
            self.mode,
            f"model version {version}" if version is not None else "the export (no version)",
            ", ".join(f"{table} {written.get(table, 0)} rows" for table in files),
        )
        return {
            "path": path_as_given(self.output_path),
            "format": "parquet",
            "files": files,
            "count": counts.rows_read,
            "rows": written,
            "pages": counts.pages,
            "dataset": self.dataset,
            "mode": self.mode,
            "load_id": info.load_id,
            "model_version": version,
            "start": api_time(span.start) if span.start is not None else None,
            "end": api_time(span.end) if span.end is not None else None,
            "order_by": "timestamp",
        }

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the dataset read; the file written, with the comments written and, for CSV, its columns.

        Names as in :mod:`airflow_provider_cm.common.lineage`; called by the OpenLineage listener.
        """
        columns = EXPORT_COLUMNS if self.output_format == "csv" else None
        written = lineage.count(lineage.task_result(self), "count")
        target = to_storage_path(self.output_path)
        if self.output_format == "parquet":  # the folder of each table's files
            outputs = [lineage.file_dataset(target / spec.name, [c.name for c in spec.columns]) for spec in DATA_TABLES]
        else:
            outputs = [lineage.file_dataset(target, columns)]
        return lineage.operator_lineage(
            inputs=[lineage.cm_dataset(self.hook, self.dataset)],
            outputs=[lineage.written(output, written) for output in outputs],
        )
