"""The warehouse model as Parquet files: one file per table per window, written atomically.

Needs ``pyarrow`` (the ``parquet`` extra: ``pip install airflow-provider-cm[parquet]``). The
schemas come from the same model as the SQL tables (:mod:`.model`): text as ``string``, integers
as ``int64``, doubles, booleans, times as ``timestamp[us, tz=UTC]``, JSON values as JSON text in
a ``string`` column (the one form every warehouse loader reads; DuckDB reads it with ``json()``).

:class:`ParquetWindowWriter` writes each page of rows as a row group as it comes (memory bounded
by a page), into a temporary file beside each final one, and moves the files into place only
once every table of the window is written: a reader never sees a partly written file, and a run
that fails before the end leaves the previous files as they were. Files are laid out
``<target>/<table>/<window>.parquet``, so a warehouse's load operator can take one table's
folder (Snowflake ``COPY INTO`` with a ``pattern``, BigQuery
``GCSToBigQueryOperator(source_format="PARQUET")``, DuckDB ``read_parquet('<table>/*.parquet')``).

The target is any path object with ``/``, ``parent.mkdir``, ``open("wb")``, ``rename`` and
``unlink``: a :class:`pathlib.Path`, or Airflow's ``ObjectStoragePath`` for object storage.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_cm.pipelines.warehouse.model import DATA_TABLES, LOADS, TableSpec
from airflow_provider_cm.pipelines.warehouse.rows import CommentRows

_ARROW_TYPES = {
    "text": pa.string(),
    "integer": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "time": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}


class StoragePath(Protocol):
    """What the writer needs of a path (:class:`pathlib.Path` and ``ObjectStoragePath`` have it)."""

    @property
    def name(self) -> str: ...

    @property
    def parent(self) -> Any: ...

    def __truediv__(self, other: str) -> Any: ...

    def open(self, mode: str = ...) -> Any: ...

    def rename(self, target: Any) -> Any: ...

    def unlink(self) -> None: ...


def arrow_schema(spec: TableSpec) -> pa.Schema:
    """The Parquet schema of a table of the model (key columns not nullable, as in SQL)."""
    return pa.schema([pa.field(c.name, _ARROW_TYPES[c.kind], nullable=c.nullable) for c in spec.columns])


def window_name(start: datetime, end: datetime) -> str:
    """A file name for a window, safe on every object store: ``20261001T000000Z_20261002T000000Z``."""
    form = "%Y%m%dT%H%M%SZ"
    return f"{start.astimezone(timezone.utc).strftime(form)}_{end.astimezone(timezone.utc).strftime(form)}"


def _arrow_rows(spec: TableSpec, rows: Iterable[dict[str, Any]]) -> pa.Table:
    json_columns = [c.name for c in spec.columns if c.kind == "json"]
    converted = []
    for row in rows:
        out = dict(row)
        for name in json_columns:
            if out.get(name) is not None:
                out[name] = json.dumps(out[name], ensure_ascii=False, sort_keys=True)
        converted.append(out)
    return pa.Table.from_pylist(converted, schema=arrow_schema(spec))


def read_rows(path: StoragePath, spec: TableSpec) -> list[dict[str, Any]]:
    """A file's rows as the row builders make them (JSON columns parsed back, times aware UTC)."""
    with path.open("rb") as handle:
        table = pq.read_table(handle)
    json_columns = [c.name for c in spec.columns if c.kind == "json"]
    rows = table.to_pylist()
    for row in rows:
        for name in json_columns:
            if row.get(name) is not None:
                row[name] = json.loads(row[name])
    return rows


class ParquetWindowWriter:
    """Write one window's rows of every table as Parquet files, atomically at :meth:`close`.

    Use as a context manager: pages written with :meth:`write`; leaving the block without an
    error moves every file into place; with an error, the temporary files are removed and the
    previous files (if any) stay.

    :param target: the folder of the files (``<target>/<table>/<window>.parquet``).
    :param window: the window's name in the file names (see :func:`window_name`).
    """

    def __init__(self, target: StoragePath, window: str) -> None:
        self.target = target
        self.window = window
        self.paths: dict[str, Any] = {}
        self.rows_written: dict[str, int] = {}
        self._temporary: dict[str, Any] = {}
        self._handles: dict[str, Any] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}

    def _writer(self, spec: TableSpec) -> pq.ParquetWriter:
        writer = self._writers.get(spec.name)
        if writer is None:
            final = self.target / spec.name / f"{self.window}.parquet"
            final.parent.mkdir(parents=True, exist_ok=True)
            temporary = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:12]}"
            self.paths[spec.name], self._temporary[spec.name] = final, temporary
            self._handles[spec.name] = temporary.open("wb")
            writer = self._writers[spec.name] = pq.ParquetWriter(self._handles[spec.name], arrow_schema(spec))
            self.rows_written[spec.name] = 0
        return writer

    def write(self, rows: CommentRows) -> None:
        """Write a page's rows of every data table (a row group per table)."""
        for spec in DATA_TABLES:
            self._write(spec, rows.tables.get(spec.name, []))

    def write_loads(self, rows: list[dict[str, Any]]) -> None:
        """Write rows of the ``loads`` table (its file holds this window's load)."""
        self._write(LOADS, rows)

    def _write(self, spec: TableSpec, rows: list[dict[str, Any]]) -> None:
        writer = self._writer(spec)
        if rows:
            writer.write_table(_arrow_rows(spec, rows))
            self.rows_written[spec.name] += len(rows)

    def __enter__(self) -> ParquetWindowWriter:
        for spec in DATA_TABLES:  # every table gets its file, empty if the window has no rows of it
            self._writer(spec)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            for name, writer in self._writers.items():
                writer.close()
                self._handles[name].close()
        except BaseException:
            self._discard()
            raise
        if kind is not None:
            self._discard()
            return
        for name, temporary in self._temporary.items():
            temporary.rename(self.paths[name])

    def _discard(self) -> None:
        for name, temporary in self._temporary.items():
            with contextlib.suppress(Exception):
                self._handles[name].close()
            with contextlib.suppress(Exception):
                temporary.unlink()
