"""A table of comments keyed by ``uid`` in a database of any common-sql connection.

:class:`CommentTable` holds one DB-API connection for a task, with autocommit off: the transfer
operators decide where each transaction ends (one per dataset window, one per stream batch).
Rows are upserted by ``uid`` with the connection's own dialect (``ON CONFLICT`` in PostgreSQL,
``REPLACE INTO`` in SQLite and MySQL), so the same task works on any DbApiHook.

Table names are checked before any SQL is built: a plain identifier or ``schema.table``, nothing
else, so a name can never carry SQL of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

#: A plain SQL identifier, optionally qualified by a schema.
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")

#: DB-API exception classes that mean "this row is refused" (a constraint, a bad value), as
#: opposed to "the database failed" (connection lost, table missing, disk full).
ROW_ERRORS = ("IntegrityError", "DataError")


def check_table_name(table: str) -> str:
    """``table`` itself if it is a plain or schema-qualified SQL identifier.

    :raises ValueError: naming what a table name may hold.
    """
    if not isinstance(table, str) or not TABLE_NAME.fullmatch(table):
        raise ValueError(
            f"table must be a plain SQL identifier or schema.table (letters, digits and underscores, "
            f"not starting with a digit), got {table!r}"
        )
    return table


def is_templated(value: Any) -> bool:
    """Whether a string argument is still a Jinja template (checked again once rendered)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def refuses_row(error: BaseException) -> bool:
    """Whether a DB-API error is the database refusing data (integrity or data error) rather than failing."""
    return any(cls.__name__ in ROW_ERRORS for cls in type(error).__mro__)


def error_reason(error: BaseException) -> str:
    """The database's reason, its first line only (later lines may quote the row), at most 200 characters."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]


def sql_hook(sql_conn_id: str) -> DbApiHook:
    """The common-sql hook of a connection.

    :raises TypeError: if the connection's type has no DbApiHook (e.g. an HTTP connection).
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    hook = BaseHook.get_hook(sql_conn_id)
    if not isinstance(hook, DbApiHook):
        raise TypeError(
            f"connection {sql_conn_id!r} is not a SQL database connection: its hook is {type(hook).__name__}, "
            "not a common-sql DbApiHook (use e.g. a sqlite, postgres, mysql or snowflake connection)"
        )
    return hook


def create_sqlite_folder(hook: DbApiHook) -> Path | None:
    """Create the folder of a SQLite connection's database file when it is missing.

    ``sqlite3`` creates a missing database file but not its folder (``sqlite3.OperationalError:
    unable to open database file``); the transfers create it, as the file export creates the
    folder of its output. Nothing is done for other databases, an in-memory database or one
    opened read-only (``mode=ro`` or ``mode=memory`` in the connection's extra).

    :return: the folder created, or None when none was missing (or the database is not a file).
    """
    if getattr(hook, "conn_type", None) != "sqlite":
        return None
    from sqlalchemy.engine import make_url

    url = make_url(hook.get_uri())
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("mode") in ("ro", "memory"):
        return None
    folder = Path(database).parent
    if folder.is_dir():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class CommentTable:
    """One connection to a table of comments keyed by ``uid``; a context manager that closes it.

    :param hook: the database's common-sql hook.
    :param table: the table, checked with :func:`check_table_name`.
    :param columns: the table's columns, ``uid`` first.
    :param types: SQL types of columns that are not ``TEXT``.
    """

    key = "uid"

    def __init__(
        self, hook: DbApiHook, table: str, columns: Sequence[str], types: Mapping[str, str] | None = None
    ) -> None:
        if not columns or columns[0] != self.key:
            raise ValueError(f"the first column must be {self.key!r}")
        self.hook = hook
        self.table = check_table_name(table)
        self.columns = tuple(columns)
        self.types = dict(types or {})
        self.connection: Any = None
        self._upsert_sql = ""

    def __enter__(self) -> CommentTable:
        self.connection = self.hook.get_conn()
        if self.hook.supports_autocommit:
            self.hook.set_autocommit(self.connection, False)
        self._upsert_sql = self.hook.dialect.generate_replace_sql(
            self.table, self.columns, list(self.columns), replace_index=[self.key]
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if error is not None:
                self.rollback()
        finally:
            self.connection.close()

    def _name(self, column: str) -> str:
        return self.hook.dialect.escape_word(column)

    def _placeholders(self, count: int) -> str:
        return ", ".join([self.hook.placeholder] * count)

    def _execute(self, sql: str, parameters: Sequence[Any] = ()) -> int:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, tuple(parameters))
            return int(cursor.rowcount if cursor.rowcount is not None else -1)
        finally:
            cursor.close()

    def exists(self) -> bool:
        """Whether the table exists (a query that reads no row; rolled back)."""
        try:
            self._execute(f"SELECT {self._name(self.key)} FROM {self.table} WHERE 1 = 0")
            return True
        except Exception:
            return False
        finally:
            self.rollback()

    def ensure(self) -> bool:
        """Create the table unless it exists, in a transaction of its own; return whether it was created.

        Two tasks creating the same table at once can collide inside the database (PostgreSQL
        answers a unique violation in ``pg_type``); the loser sees the winner's table and goes on.
        """
        if self.exists():
            return False
        definitions = ", ".join(
            f"{self._name(c)} {self.types.get(c, 'TEXT')}{' PRIMARY KEY' if c == self.key else ''}"
            for c in self.columns
        )
        try:
            self._execute(f"CREATE TABLE {self.table} ({definitions})")
            self.commit()
        except Exception:
            self.rollback()
            if self.exists():
                return False
            raise
        return True

    def delete_window(self, column: str, start: str, end: str, source_ids: Sequence[str] | None = None) -> int:
        """Delete the rows whose ``column`` is in ``[start, end)``, of ``source_ids`` unless ``None``; not committed.

        :return: the rows deleted, as the driver counts them (-1 if it does not); 0 for no source.
        """
        if source_ids is not None and not source_ids:
            return 0
        sql = f"DELETE FROM {self.table} WHERE {self._name(column)} >= {self.hook.placeholder}"
        sql += f" AND {self._name(column)} < {self.hook.placeholder}"
        if source_ids:
            sql += f" AND {self._name('source_id')} IN ({self._placeholders(len(source_ids))})"
        return self._execute(sql, [start, end, *(source_ids or ())])

    def upsert(self, rows: Sequence[Sequence[Any]]) -> None:
        """Insert or replace ``rows`` (values in :attr:`columns` order) by ``uid``; not committed."""
        if not rows:
            return
        cursor = self.connection.cursor()
        try:
            cursor.executemany(self._upsert_sql, [tuple(row) for row in rows])
        finally:
            cursor.close()

    def commit(self) -> None:
        self.connection.commit()

    def rollback(self) -> None:
        self.connection.rollback()

    def find_refused(self, rows: Sequence[Sequence[Any]]) -> dict[str, str]:
        """The rows the database refuses, ``{uid: reason}``, found by bisecting ``rows``.

        Every attempt is rolled back: this only finds the refused rows, it writes nothing.

        :raises Exception: the database's own error when it fails for another reason than a refused row.
        """
        refused: dict[str, str] = {}
        pending = [list(rows)]
        while pending:
            part = pending.pop()
            try:
                self.upsert(part)
            except Exception as error:
                self.rollback()
                if not refuses_row(error):
                    raise
                if len(part) == 1:
                    refused[str(part[0][0])] = error_reason(error)
                else:
                    middle = len(part) // 2
                    pending += [part[middle:], part[:middle]]
            else:
                self.rollback()
        return refused
