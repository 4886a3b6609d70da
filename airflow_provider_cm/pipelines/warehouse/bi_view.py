"""The wide view for BI tools: one row per comment, one column per label of the taxonomy.

Shaped like the vendor's own Tableau tutorial ("Fetching data for Tableau with Python"): the
comment's fields, then every label's predicted probability, 0 where the label is not predicted.
Built from the long tables (``comments`` joined to the ``predicted`` rows of ``comment_labels``),
rows marked deleted left out, as SQL generated for the engine's dialect (quoted identifiers,
names longer than the dialect allows shortened with a hash so two labels never share a column).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from airflow_provider_cm.pipelines.warehouse.model import DELETED_AT
from airflow_provider_cm.pipelines.warehouse.sql_tables import build_tables

#: The view's name in the database (after the tables' prefix).
VIEW_NAME = "comment_label_probabilities"

#: The comment columns the view shows before the label columns.
VIEW_COMMENT_COLUMNS = (
    "uid",
    "comment_id",
    "source_id",
    "thread_id",
    "timestamp",
    "created_at",
    "subject",
    "body",
    "sender",
    "has_annotations",
    "model_version",
)


def label_column_names(labels: Sequence[str], max_length: int) -> dict[str, str]:
    """A column name for each label: the label itself, or, if longer than ``max_length``, its
    start and a hash of the whole name.

    :raises ValueError: if two labels would share a column (also with a comment column).
    """
    names: dict[str, str] = {}
    taken = {c.lower(): c for c in VIEW_COMMENT_COLUMNS}
    for label in labels:
        column = label
        if len(column) > max_length:
            digest = hashlib.sha256(label.encode("utf-8")).hexdigest()[:8]
            column = f"{label[: max_length - 9]}~{digest}"
        clash = taken.get(column.lower())
        if clash is not None:
            raise ValueError(f"labels {label!r} and {clash!r} would share the BI view column {column!r}")
        taken[column.lower()] = label
        names[label] = column
    return names


def wide_view_select(
    dialect: Dialect, labels: Sequence[str], *, prefix: str = "", schema: str | None = None
) -> sa.Select[tuple[object, ...]]:
    """The view's query: each comment (not deleted) with one probability column per label."""
    tables = build_tables(sa.MetaData(schema=schema), prefix)
    comments, label_rows = tables["comments"], tables["comment_labels"]
    columns = label_column_names(labels, dialect.max_identifier_length or 63)
    probability = [
        sa.func.coalesce(
            sa.func.max(sa.case((label_rows.c.label == label, label_rows.c.probability))), sa.literal(0.0)
        ).label(columns[label])
        for label in labels
    ]
    joined = comments.outerjoin(
        label_rows,
        sa.and_(
            label_rows.c.uid == comments.c.uid,
            label_rows.c.kind == "predicted",
            label_rows.c[DELETED_AT].is_(None),
        ),
    )
    shown = [comments.c[name] for name in VIEW_COMMENT_COLUMNS]
    return sa.select(*shown, *probability).select_from(joined).where(comments.c[DELETED_AT].is_(None)).group_by(*shown)


def wide_view_ddl(
    dialect: Dialect,
    labels: Sequence[str],
    *,
    view: str = VIEW_NAME,
    prefix: str = "",
    schema: str | None = None,
) -> list[str]:
    """``DROP VIEW IF EXISTS`` and ``CREATE VIEW`` statements of the wide view for ``dialect``.

    :param labels: the taxonomy's label names (``"Parent > Child"``), one column each, in order.
    :param view: the view's name (``prefix`` is put before it too).
    """
    preparer = dialect.identifier_preparer
    name = preparer.quote(f"{prefix}{view}")
    if schema:
        name = f"{preparer.quote_schema(schema)}.{name}"
    query = wide_view_select(dialect, labels, prefix=prefix, schema=schema)
    body = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    return [f"DROP VIEW IF EXISTS {name}", f"CREATE VIEW {name} AS\n{body}"]
