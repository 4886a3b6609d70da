"""OpenLineage datasets for what the operators read and write: the one place that names them.

Every operator's ``get_openlineage_facets_on_complete`` builds its inputs and outputs here, so a
source, dataset or stream has the same namespace and name whichever task touched it, and a
lineage graph joins the upload of a source, the export of its dataset and the drain of a stream
over it.

**Communications Mining resources** live in a namespace made from the API endpoint of the task's
connection (:func:`api_namespace`), ``communications-mining://<host>[:<port>][/<path prefix>]``:
the host lower-cased, the port only when it is not the scheme's default (443 for ``https``, 80 for
``http``), the path prefix of an Automation Cloud tenant kept (``/<organisation>/<tenant>/reinfer_``);
never the user, password, query or fragment of the URL, and not its ``http``/``https`` scheme (one
tenant, whichever way it is reached). Their names follow the API's own routes, so the kind is part
of the name (a project often has a source and a dataset of the same name):

* a source: ``sources/<project>/<source>``;
* a dataset: ``datasets/<project>/<dataset>``;
* a stream: ``datasets/<project>/<dataset>/streams/<stream>``.

For example ``communications-mining://cloud.uipath.com/acme/production/reinfer_`` with the name
``datasets/demo/support``.

**Files** (local paths and any ``ObjectStoragePath``) follow OpenLineage's naming for files and
object storage through the asset converters the Airflow providers register (common-io gives
``file`` and the absolute path for a local file; the amazon and google providers ``s3://<bucket>``
or ``gs://<bucket>`` and the key); for a scheme no installed provider converts, the path's own
``namespace`` (``<protocol>://<bucket>``) and key.

**Tables** follow common-sql's conventions through the SQL hook's own OpenLineage information
(``get_openlineage_database_info``, ``get_openlineage_default_schema``): PostgreSQL tables are
``postgres://<host>:<port>`` and ``<database>.<schema>.<table>``, the schema ``CURRENT_SCHEMA`` when
the table name has none. The SQLite hook gives no such information; a SQLite database is a local
file, so its tables are named after it: namespace ``sqlite`` and ``<absolute database
path>.<schema>.<table>``, the schema ``main`` (SQLite's name for the connection's database) unless
the table name has one. Another database whose hook gives none gets ``<conn_type>://<host>:<port>``
and ``<database>.<schema>.<table>``.

The OpenLineage provider is optional: this module imports it only inside the functions that build
OpenLineage objects, which run only when the provider's listener asks an operator for its lineage.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from airflow_provider_cm.common.storage import location
from airflow_provider_cm.hooks.communications_mining import split_full_name

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

log = logging.getLogger(__name__)

R = TypeVar("R")

#: The scheme of Communications Mining namespaces.
SCHEME = "communications-mining"

_DEFAULT_PORTS = {"https": 443, "http": 80}


def api_namespace(endpoint: str) -> str:
    """The OpenLineage namespace of an API endpoint: ``communications-mining://<host>[:<port>][/<prefix>]``.

    :param endpoint: the hook's endpoint, e.g. ``https://cloud.uipath.com/acme/production/reinfer_``.
    :raises ValueError: if the endpoint has no host or a port that is not a number.
    """
    parts = urlsplit(endpoint.strip())
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"the API endpoint {endpoint!r} has no host")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    port = parts.port
    authority = host if port is None or port == _DEFAULT_PORTS.get(parts.scheme.lower()) else f"{host}:{port}"
    return f"{SCHEME}://{authority}{parts.path.rstrip('/')}"


def source_name(source: str) -> str:
    """``sources/<project>/<source>`` for ``"project/source"``.

    :raises ValueError: if ``source`` is not ``project/name``.
    """
    project, name = split_full_name(source, "source")
    return f"sources/{project}/{name}"


def dataset_name(dataset: str) -> str:
    """``datasets/<project>/<dataset>`` for ``"project/dataset"``.

    :raises ValueError: if ``dataset`` is not ``project/name``.
    """
    project, name = split_full_name(dataset, "dataset")
    return f"datasets/{project}/{name}"


def stream_name(dataset: str, stream: str) -> str:
    """``datasets/<project>/<dataset>/streams/<stream>``.

    :raises ValueError: if ``dataset`` is not ``project/name`` or ``stream`` is empty.
    """
    if not stream:
        raise ValueError("stream must be a stream name")
    return f"{dataset_name(dataset)}/streams/{stream}"


# -- OpenLineage objects (the provider is imported only here) -----------------------------------


def source_dataset(hook: CommunicationsMiningHook, source: str) -> Dataset:
    """The OpenLineage dataset of a source reached through ``hook``'s endpoint."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return Dataset(namespace=api_namespace(hook.endpoint), name=source_name(source))


def cm_dataset(hook: CommunicationsMiningHook, dataset: str) -> Dataset:
    """The OpenLineage dataset of a Communications Mining dataset reached through ``hook``'s endpoint."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return Dataset(namespace=api_namespace(hook.endpoint), name=dataset_name(dataset))


def stream_dataset(hook: CommunicationsMiningHook, dataset: str, stream: str) -> Dataset:
    """The OpenLineage dataset of a stream of ``dataset`` reached through ``hook``'s endpoint."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return Dataset(namespace=api_namespace(hook.endpoint), name=stream_name(dataset, stream))


def file_dataset(path: ObjectStoragePath, columns: Sequence[str] | None = None) -> Dataset:
    """The OpenLineage dataset of a file, named by the asset converter of its scheme (see the module).

    :param path: the file (``to_storage_path`` of what the user gave).
    :param columns: for a CSV file, its columns (a schema facet, every column a ``string``).
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
    from airflow.sdk import Asset

    converted = None
    try:
        converted = translate_airflow_asset(Asset(uri=location(path)), None)
    except Exception as exc:  # a URI an Asset refuses: name it from the path itself
        log.debug("No asset conversion for %s: %s", path, exc)
    if converted is not None:
        namespace, name = converted.namespace, converted.name
    elif path.protocol in ("file", "local"):
        namespace, name = "file", "/" + path.key
    else:
        namespace, name = path.namespace, path.key
    facets = {"schema": _schema_facet((column, "string") for column in columns)} if columns else {}
    return Dataset(namespace=namespace, name=name, facets=facets)


def table_dataset(hook: DbApiHook, table: str, column_types: Mapping[str, str]) -> Dataset:
    """The OpenLineage dataset of a table of a common-sql connection, with the columns written (see the module).

    :param hook: the connection's common-sql hook.
    :param table: ``table`` or ``schema.table``, as the operator writes it.
    :param column_types: the columns the operator writes and their SQL types (the schema facet).
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.sqlparser import DatabaseInfo, SQLParser, from_table_meta
    from openlineage.common.sql import DbTableMeta

    connection = hook.get_connection(hook.get_conn_id())
    info = hook.get_openlineage_database_info(connection)
    schema, _, _ = table.rpartition(".")
    if info is not None:
        default_schema = hook.get_openlineage_default_schema()
    elif connection.conn_type == "sqlite":
        host = connection.host or ""
        info = DatabaseInfo(scheme="sqlite", database=host if host in ("", ":memory:") else os.path.abspath(host))
        default_schema = "main"
    else:
        authority = hook.get_openlineage_authority_part(connection)
        info = DatabaseInfo(scheme=connection.conn_type, authority=authority, database=connection.schema or None)
        default_schema = hook.get_openlineage_default_schema()
    meta = DbTableMeta(table if schema or not default_schema else f"{default_schema}.{table}")
    named = from_table_meta(meta, info.database, SQLParser.create_namespace(info), info.is_uppercase_names)
    return Dataset(namespace=named.namespace, name=named.name, facets={"schema": _schema_facet(column_types.items())})


def written(dataset: Dataset, rows: int | None) -> Dataset:
    """``dataset`` as an output, with an ``outputStatistics`` facet of ``rows`` when known.

    :param rows: what the task wrote: rows of a table, comments of a file, a source or a dataset.
    """
    from airflow.providers.common.compat.openlineage.facet import OutputDataset, OutputStatisticsOutputDatasetFacet

    output_facets: dict[str, Any] = {}
    if rows is not None:
        output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(rowCount=rows)
    return OutputDataset(
        namespace=dataset.namespace, name=dataset.name, facets=dict(dataset.facets or {}), outputFacets=output_facets
    )


def operator_lineage(inputs: Iterable[Dataset], outputs: Iterable[Dataset]) -> OperatorLineage:
    """The ``OperatorLineage`` an operator returns to the OpenLineage listener."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=list(inputs), outputs=list(outputs))


def records_result(execute: Callable[[Any, Any], R]) -> Callable[[Any, Any], R]:
    """Decorate an operator's ``execute`` to keep what it returned on the operator, for :func:`task_result`.

    The OpenLineage listener asks for lineage in the task's process (by default in a fork of it),
    where reading the task's XCom back would be one more round trip to the API server, from a
    process that shares the task's connection to it; the result the task already holds is used instead.
    """

    @functools.wraps(execute)
    def execute_and_keep(operator: Any, context: Any) -> R:
        result = execute(operator, context)
        operator._openlineage_result = result
        return result

    return execute_and_keep


def task_result(operator: Any) -> Any:
    """What the operator's ``execute`` returned in this process (see :func:`records_result`), or ``None``.

    ``None`` when the task did not return (it failed): the lineage is then reported without
    output statistics rather than with figures of a run that did not finish.
    """
    return getattr(operator, "_openlineage_result", None)


def count(result: Any, *keys: str) -> int | None:
    """The sum of ``result[key]`` for ``keys``, or ``None`` unless ``result`` holds an integer at each."""
    values = [result.get(key) if isinstance(result, Mapping) else None for key in keys]
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        return None
    return sum(values)  # type: ignore[arg-type]


def _schema_facet(columns: Iterable[tuple[str, str]]) -> Any:
    from airflow.providers.common.compat.openlineage.facet import SchemaDatasetFacet, SchemaDatasetFacetFields

    return SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=name, type=kind) for name, kind in columns])
