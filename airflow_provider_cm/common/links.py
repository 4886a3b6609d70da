"""Operator extra links from a finished task to the Communications Mining web UI of its tenant.

Every operator of the provider and the stream sensor carry :class:`CommunicationsMiningTenantLink`
("Communications Mining" on the task's page in the Airflow UI). Before the task runs, the task
stores the API endpoint of its connection in XCom (:meth:`CommunicationsMiningTenantLink.persist`,
key :data:`LINK_XCOM_KEY`); when the task ends, Airflow asks the link for its URL
(:meth:`CommunicationsMiningTenantLink.get_link`), which :func:`tenant_ui_url` builds from that
endpoint, and keeps it for the UI and the REST API
(``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links``).

**Only what the vendor documents.** The tenant's web UI is at the tenant's endpoint: for a legacy
tenant "your unique domain is the same one that you log into on the Communications Mining web UI"
(``https://<mydomain>.reinfer.io``), and an Automation Cloud tenant's endpoint is
``https://cloud.uipath.com/<organisation>/<tenant>/reinfer_``
(https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/tenants). The documentation shows
no URL form for the page of a source, a dataset, a stream or a model version (it describes the way
there: the Datasets page, then the dataset's Streams or Models tab), so the provider builds none:
a link to such a page would be a guess that breaks silently when the UI's routes change.

The link is the same on every supported Airflow minor (3.2 to 3.4): the task runner calls
``get_link`` when the task finishes, in the worker, and stores its result under the link's own
``xcom_key``, which the API server reads; nothing here differs between minors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["LINK_XCOM_KEY", "CommunicationsMiningTenantLink", "tenant_ui_url"]

#: The XCom key under which a task stores what its links are built from: ``{"endpoint": str}``.
LINK_XCOM_KEY = "communications_mining_link"

#: The last path segment of an Automation Cloud tenant's Communications Mining endpoint.
AUTOMATION_CLOUD_SERVICE = "reinfer_"
#: The domain of legacy (Re:infer) tenants: ``<mydomain>.reinfer.io``.
LEGACY_DOMAIN = ".reinfer.io"


def _segment(text: str) -> str:
    """One path segment, percent-encoded once (an already encoded ``My%20Org`` stays as it is)."""
    return quote(unquote(text), safe="")


def tenant_ui_url(endpoint: str) -> str:
    """The address of the tenant's Communications Mining web UI, from the API endpoint of a connection.

    * An Automation Cloud tenant, ``https://cloud.uipath.com/<organisation>/<tenant>/reinfer_``
      (anything after ``reinfer_`` dropped, e.g. ``/api``): that address, each path segment
      percent-encoded once (``Acme Corp`` becomes ``Acme%20Corp``). The same form on another host
      (a dedicated or public-sector cloud, the provider's emulator) is read the same way.
    * A legacy tenant, ``https://<mydomain>.reinfer.io/...``: its origin, ``https://<mydomain>.reinfer.io``.
    * Any other endpoint: the endpoint itself (scheme, host and path), path segments encoded once.

    :param endpoint: the API endpoint (``CommunicationsMiningHook.endpoint``: scheme, host and any
        path prefix, no ``/api``); a trailing ``/`` or ``/api`` is ignored.
    :returns: an absolute ``http(s)`` URL without a trailing slash.
    :raises ValueError: if ``endpoint`` is not an absolute ``http`` or ``https`` URL.
    """
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) API endpoint: {endpoint!r}")
    segments = [segment for segment in parts.path.split("/") if segment]
    if AUTOMATION_CLOUD_SERVICE in segments:
        segments = segments[: segments.index(AUTOMATION_CLOUD_SERVICE) + 1]
    elif parts.hostname.lower().endswith(LEGACY_DOMAIN):
        segments = []
    elif segments and segments[-1] == "api":
        segments = segments[:-1]
    path = "".join(f"/{_segment(segment)}" for segment in segments)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class CommunicationsMiningTenantLink(BaseOperatorLink):
    """ "Communications Mining": the web UI of the tenant the task talked to (see the module).

    Empty (Airflow shows no button) when the task stored nothing: it did not start, it was run
    without a task instance (``operator.execute(context)`` in a test), or its connection could not
    be read (the task's log says why).
    """

    name = "Communications Mining"
    #: Where the task stores the endpoint (:data:`LINK_XCOM_KEY`); the link's own URL goes under ``xcom_key``.
    key: ClassVar[str] = LINK_XCOM_KEY

    @classmethod
    def persist(cls, context: Any, *, endpoint: str) -> None:
        """Store in XCom what the link is built from, for the running task instance.

        :param context: the task's context (its ``ti`` pushes the XCom); without a ``ti`` nothing is stored.
        :param endpoint: the API endpoint of the task's connection (``CommunicationsMiningHook.endpoint``).
        :raises ValueError: if ``endpoint`` is not an absolute ``http(s)`` URL (checked before storing).
        """
        tenant_ui_url(endpoint)
        ti = context.get("ti") if hasattr(context, "get") else None
        if ti is not None:
            ti.xcom_push(key=cls.key, value={"endpoint": endpoint})

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The tenant's web UI (:func:`tenant_ui_url` of the stored endpoint), or ``""`` if none was stored."""
        from airflow_provider_cm.common.compat import xcom_value

        stored = xcom_value(ti_key=ti_key, key=self.key)
        if not isinstance(stored, dict) or not stored.get("endpoint"):
            return ""
        return tenant_ui_url(str(stored["endpoint"]))
