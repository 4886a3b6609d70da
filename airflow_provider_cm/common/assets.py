"""The Assets the provider's operators declare, so that DAGs can be scheduled on what they wrote.

* a dataset's exports: ``Asset(name="communications_mining_export/<project>/<dataset>",
  uri="communications-mining://<project>/<dataset>")`` (:func:`export_asset`);
* a warehouse table loaded by a transfer: ``Asset(name="communications_mining_table/<conn_id>/<table>",
  uri="communications-mining-sql://<conn_id>/<table>")`` (:func:`table_asset`);
* a source an upload wrote to: ``Asset(name="communications_mining_source/<project>/<source>",
  uri="communications-mining-source://<project>/<source>")`` (:func:`source_asset`);
* a stream, for event-driven scheduling with an ``AssetWatcher``:
  ``Asset(name="communications_mining_stream/<project>/<dataset>/<stream>",
  uri="communications-mining-stream://<project>/<dataset>/<stream>")`` (:func:`stream_asset`).

When the argument that names the Asset is templated, the operator declares an ``AssetAlias``
instead (:func:`outlet_for`), which resolves when the task runs to the Asset of the rendered
value; :func:`record_outlet_events` puts the task's result in the events' ``extra`` either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from airflow.sdk import Asset, AssetAlias, AssetWatcher


def export_asset(dataset: str) -> Asset:
    """The Asset of ``dataset``'s exports (``"project/dataset"``)."""
    return Asset(name=f"communications_mining_export/{dataset}", uri=f"communications-mining://{dataset}")


def source_asset(source: str) -> Asset:
    """The Asset of the comments of ``source`` (``"project/source"``), which uploads update."""
    return Asset(name=f"communications_mining_source/{source}", uri=f"communications-mining-source://{source}")


def table_asset(sql_conn_id: str, table: str) -> Asset:
    """The Asset of a warehouse table a transfer loads (connection id and ``table`` or ``schema.table``)."""
    return Asset(
        name=f"communications_mining_table/{sql_conn_id}/{table}",
        uri=f"communications-mining-sql://{sql_conn_id}/{table}",
    )


def stream_asset(dataset: str, stream: str, watchers: Sequence[AssetWatcher] = ()) -> Asset:
    """The Asset that stands for a stream's new results (``dataset`` as ``"project/dataset"``).

    :param watchers: ``AssetWatcher`` s whose events update the Asset, e.g. one with a
        :class:`~airflow_provider_cm.triggers.streams.CommunicationsMiningStreamEventTrigger`.
    """
    return Asset(
        name=f"communications_mining_stream/{dataset}/{stream}",
        uri=f"communications-mining-stream://{dataset}/{stream}",
        watchers=list(watchers),
    )


def is_template(value: Any) -> bool:
    """Whether an argument is still a Jinja template when the DAG is parsed."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def outlet_for(kind: str, task_id: str, names: Iterable[str], asset: Callable[[], Asset]) -> Asset | AssetAlias:
    """The outlet an operator declares: ``asset()``, or an AssetAlias when one of ``names`` is templated.

    :param kind: ``"export"`` or ``"table"``, for the alias's name
        (``communications_mining_<kind>:<task_id>``).
    """
    if any(is_template(name) for name in names):
        return AssetAlias(name=f"communications_mining_{kind}:{task_id}")
    return asset()


def record_outlet_events(
    outlets: Iterable[Any], context: Mapping[str, Any], asset: Asset, extra: Mapping[str, Any]
) -> None:
    """Put ``extra`` (the task's result) in its outlets' events; an AssetAlias gets ``asset`` (as rendered)."""
    outlet_events = context.get("outlet_events")
    if outlet_events is None:
        return
    for outlet in outlets:
        if isinstance(outlet, Asset):
            outlet_events[outlet].extra = dict(extra)
        elif isinstance(outlet, AssetAlias):
            outlet_events[outlet].add(asset, extra=dict(extra))
