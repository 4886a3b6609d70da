"""The warehouse model, once: every table, its columns, their logical types and keys.

The SQL tables (:mod:`.sql_tables`) and the Parquet schemas (:mod:`.parquet`) are both built from
:data:`TABLES`, so the two cannot drift. Logical types:

======== ============================================ =================================
kind     SQL (through SQLAlchemy, per dialect)         Parquet (pyarrow)
======== ============================================ =================================
text     ``TEXT`` / ``VARCHAR``                        ``string``
integer  ``BIGINT``                                    ``int64``
double   ``DOUBLE PRECISION`` (``DOUBLE`` in SQLite)   ``double``
boolean  ``BOOLEAN``                                   ``bool``
time     ``TIMESTAMP WITH TIME ZONE``, UTC             ``timestamp[us, tz=UTC]``
json     ``JSONB`` (PostgreSQL), ``JSON`` where the    ``string`` holding JSON text
         dialect has it, ``TEXT`` elsewhere
======== ============================================ =================================

Every data table carries the metadata columns :data:`METADATA_COLUMNS` (named ``_cm_*`` as the
field's loaders name theirs: ``_fivetran_synced``, ``_dlt_load_id``, ``_airbyte_extracted_at``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "integer", "double", "boolean", "time", "json"]


@dataclass(frozen=True)
class Column:
    """One column: its name, logical type, whether it may be null, and whether it is part of the key."""

    name: str
    kind: Kind
    nullable: bool = True
    key: bool = False
    doc: str = ""


@dataclass(frozen=True)
class TableSpec:
    """One table of the model: its name (before any prefix) and columns, key columns first."""

    name: str
    columns: tuple[Column, ...]
    doc: str = ""

    @property
    def key(self) -> tuple[str, ...]:
        """The names of the key columns."""
        return tuple(c.name for c in self.columns if c.key)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Every column's name, in order."""
        return tuple(c.name for c in self.columns)

    @property
    def data_columns(self) -> tuple[str, ...]:
        """The columns a row hash covers: all but the metadata columns."""
        return tuple(c.name for c in self.columns if c.name not in METADATA_NAMES)


LOAD_ID = "_cm_load_id"
EXTRACTED_AT = "_cm_extracted_at"
ROW_HASH = "_cm_row_hash"
DELETED_AT = "_cm_deleted_at"
#: On ``comments`` only: the hash of the comment as the API gave it (see ``rows.comment_hash``).
COMMENT_HASH = "_cm_comment_hash"

#: On every row of every data table.
METADATA_COLUMNS = (
    Column(LOAD_ID, "text", nullable=False, doc="the load that last wrote the row (``loads.load_id``)"),
    Column(EXTRACTED_AT, "time", nullable=False, doc="when that load read the row from the API"),
    Column(ROW_HASH, "text", nullable=False, doc="SHA-256 of the row's data columns (see ``row_hash``)"),
    Column(DELETED_AT, "time", doc="when a load found the row gone from the platform; null while it exists"),
)
COMMENT_HASH_COLUMN = Column(
    COMMENT_HASH,
    "text",
    doc="SHA-256 of the comment as the API gave it (its export item and the predictions loaded, with their"
    " version): a load that reads it unchanged builds and compares none of its rows",
)
METADATA_NAMES = frozenset(c.name for c in METADATA_COLUMNS) | {COMMENT_HASH}

COMMENTS = TableSpec(
    "comments",
    (
        Column("uid", "text", nullable=False, key=True, doc="``<source_id>.<comment_id>``"),
        Column("comment_id", "text", nullable=False),
        Column("source_id", "text", nullable=False),
        Column("thread_id", "text"),
        Column("timestamp", "time", nullable=False, doc="the comment's own time, UTC"),
        Column("created_at", "time", doc="when it was uploaded, UTC"),
        Column("subject", "text"),
        Column("body", "text"),
        Column("sender", "text"),
        Column("recipients", "json", doc="``to``, ``cc`` and ``bcc`` of every message, in order, as a list"),
        Column("user_properties", "json", doc="the ``string:``/``number:`` map as the API gives it"),
        Column("has_annotations", "boolean"),
        Column(
            "model_version", "integer", doc="the pinned version its predictions came from; null: the export's latest"
        ),
        *METADATA_COLUMNS,
        COMMENT_HASH_COLUMN,
    ),
    "one row per comment",
)

COMMENT_LABELS = TableSpec(
    "comment_labels",
    (
        Column("uid", "text", nullable=False, key=True),
        Column("kind", "text", nullable=False, key=True, doc="``assigned``, ``dismissed`` or ``predicted``"),
        Column("label", "text", nullable=False, key=True, doc="the full name, levels joined by ``' > '``"),
        Column("depth", "integer", nullable=False, doc="the number of levels"),
        Column("level_1", "text", nullable=False),
        Column("level_2", "text"),
        Column("level_3", "text", doc="the third level (deeper levels are in ``label``)"),
        Column("probability", "double", doc="predicted labels only"),
        Column("sentiment", "double", doc="assigned: 1 positive, -1 negative; predicted: the API's number"),
        Column("model_version", "integer", doc="predicted labels: the pinned version; null: the export's latest"),
        Column("metadata", "json", doc="the label's metadata where the API gives it"),
        *METADATA_COLUMNS,
    ),
    "one row per label of a comment (assigned, dismissed or predicted)",
)

COMMENT_ENTITIES = TableSpec(
    "comment_entities",
    (
        Column("uid", "text", nullable=False, key=True),
        Column("kind", "text", nullable=False, key=True, doc="``assigned`` or ``predicted``"),
        Column("position", "integer", nullable=False, key=True, doc="its place in the API's list"),
        Column("name", "text", nullable=False),
        Column("formatted_value", "text"),
        Column("probability", "double"),
        Column("spans", "json", doc="``[{content_part, message_index, utf16_byte_start, utf16_byte_end}]``"),
        *METADATA_COLUMNS,
    ),
    "one row per general field (entity) of a comment",
)

COMMENT_USER_PROPERTIES = TableSpec(
    "comment_user_properties",
    (
        Column("uid", "text", nullable=False, key=True),
        Column("name", "text", nullable=False, key=True, doc="without its ``string:``/``number:`` prefix"),
        Column("type", "text", nullable=False, doc="``string`` or ``number``"),
        Column("string_value", "text"),
        Column("number_value", "double"),
        *METADATA_COLUMNS,
    ),
    "one row per user property of a comment, typed",
)

LOADS = TableSpec(
    "loads",
    (
        Column("load_id", "text", nullable=False, key=True),
        Column("dag_id", "text"),
        Column("run_id", "text"),
        Column("task_id", "text"),
        Column("dataset", "text", nullable=False),
        Column("mode", "text", nullable=False, doc="``window``, ``lookback`` or ``reconcile``"),
        Column("window_start", "time"),
        Column("window_end", "time"),
        Column("model_version", "integer"),
        Column("rows_read", "integer", nullable=False, doc="comments read from the API"),
        Column("rows_written", "integer", nullable=False, doc="rows inserted or updated, all tables"),
        Column("rows_unchanged", "integer", nullable=False, doc="rows whose hash was already stored, all tables"),
        Column("rows_marked_deleted", "integer", nullable=False, doc="rows given a deleted-at, all tables"),
        Column("pages", "integer", nullable=False),
        Column("started_at", "time", nullable=False),
        Column("finished_at", "time", nullable=False),
    ),
    "one row per load",
)

#: The per-comment tables, parent first.
DATA_TABLES = (COMMENTS, COMMENT_LABELS, COMMENT_ENTITIES, COMMENT_USER_PROPERTIES)
#: Every table of the model.
TABLES = (*DATA_TABLES, LOADS)
