"""The Communications Mining hook: one method per API route over the provider's request pipeline.

API reference: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/using-the-api
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, TypedDict, TypeVar, overload
from urllib.parse import quote

import requests
from airflow.sdk import BaseHook

from airflow_provider_cm.exceptions import (
    CommunicationsMiningNotFoundError,
    CommunicationsMiningProtocolError,
    CommunicationsMiningTagError,
)
from airflow_provider_cm.hooks.auth import ClientCredentials
from airflow_provider_cm.hooks.concurrency import is_throttling
from airflow_provider_cm.hooks.export_slices import SlicedExport, check_concurrency
from airflow_provider_cm.hooks.if_exists import EnsuredObject, Setup
from airflow_provider_cm.hooks.pacing import RatePacer
from airflow_provider_cm.hooks.retry import RetryPolicy
from airflow_provider_cm.hooks.settings import ConnectionSettings, endpoint_from_connection
from airflow_provider_cm.hooks.transport import (
    ApiCall,
    AsyncTransport,
    AttemptObserver,
    Params,
    Reply,
    SyncTransport,
    encode_json,
)
from airflow_provider_cm.labels import label_levels, label_name
from airflow_provider_cm.times import api_time
from airflow_provider_cm.windows import before_end

__all__ = [
    "CommunicationsMiningHook",
    "SyncResult",
    "annotation_read_chunks",
    "endpoint_from_connection",
    "split_full_name",
]

T = TypeVar("T")

#: Most comments the ``sync`` route takes in one request.
MAX_SYNC_COMMENTS = 16384
#: Most comments one export page returns.
MAX_EXPORT_LIMIT = 256
#: Most comments one stream fetch looks at.
MAX_STREAM_FETCH = 1024
#: Most documents one predict request takes.
MAX_PREDICT_DOCUMENTS = 4096
#: Most comment uids one annotation read (``GET .../labellings?id=...``) asks for.
MAX_ANNOTATION_READ_IDS = 128
#: Most bytes of query string one annotation read carries: well under the 8 KiB request line
#: that common servers and gateways accept, with room for the endpoint and path.
MAX_ANNOTATION_READ_QUERY = 4096
#: Most comments one page of the source-wide annotation read returns (the emulator's bound; the
#: API's is not published).
MAX_ANNOTATION_PAGE = 1024
#: ``test_connection`` answers within seconds: two attempts, at most 10 s connecting and 20 s reading.
TEST_CONNECTION_POLICY = RetryPolicy(max_attempts=2, max_elapsed=15.0, initial_wait=0.5, max_wait=2.0)
TEST_CONNECTION_TIMEOUTS = (10.0, 20.0)


class SyncResult(TypedDict):
    """Counts returned by the ``sync`` route, and whether they may undercount.

    ``maybe_committed_earlier`` is true when an earlier attempt of the same request failed after
    it may have been carried out and the request was resent: comments that attempt created or
    changed are then counted as ``unchanged`` (they were billed all the same).
    """

    new: int
    updated: int
    unchanged: int
    maybe_committed_earlier: bool


def split_full_name(full_name: str, kind: str) -> tuple[str, str]:
    """Split ``"project/name"`` into its two parts.

    :param full_name: the source's or dataset's full name.
    :param kind: ``"source"`` or ``"dataset"``, for the error message.
    :raises ValueError: if ``full_name`` is not exactly two non-empty parts joined by ``/``.
    """
    parts = full_name.split("/") if isinstance(full_name, str) else []
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{kind} must be given as 'project/name', got {full_name!r}")
    return parts[0], parts[1]


def resource_path(*segments: str) -> str:
    """Join path segments, percent-encoding each (``/`` becomes ``%2F``; ``id:<id>`` keeps its colon)."""
    return "/".join(quote(str(segment), safe=":") for segment in segments)


class CommunicationsMiningHook(BaseHook):
    """Talk to the UiPath Communications Mining API.

    The connection (type ``communications_mining``) holds:

    * ``host``: the API endpoint up to, not including, ``/api``, with any path prefix, e.g.
      ``https://cloud.uipath.com/<organisation>/<tenant>/reinfer_`` or ``https://<tenant>.reinfer.io``.
      Without a scheme, ``https`` is assumed.
    * ``password``: the API token, sent as ``Authorization: Bearer``; or, for an Automation Cloud
      external application, the extras ``client_id``, ``client_secret``, ``scope`` and optionally
      ``token_url`` (default ``https://<host>/<organisation>/identity_/connect/token``): the hook
      then fetches a client-credentials token, caches it until shortly before it expires, and
      fetches a new one once when the API answers 401.
    * extras, each a field of the Airflow UI's connection form
      (:mod:`airflow_provider_cm.connection_form`): ``verify`` (true or false, default true),
      ``ca_bundle`` (path of a CA bundle file or directory to verify with; a path in ``verify``
      also still works), ``timeout`` (read timeout in seconds, default 120), ``connect_timeout``
      (seconds, default 10), ``proxies`` (a requests proxy map such as
      ``{"https": "http://proxy:3128"}``), and the retry settings ``retry_max_attempts``
      (default 5), ``retry_max_elapsed`` (seconds, default 300), ``retry_initial_wait`` (seconds,
      default 1), ``retry_max_wait`` (seconds, default 30) and ``retry_retry_after_cap`` (seconds,
      default 120). An extra stored empty (``null`` or ``""``) means its default.

    The settings are resolved once (:class:`~airflow_provider_cm.hooks.settings.ConnectionSettings`)
    and serve both transports: :class:`~airflow_provider_cm.hooks.transport.SyncTransport` for the
    route methods (workers) and :class:`~airflow_provider_cm.hooks.transport.AsyncTransport` for the
    ``a``-prefixed ones (the triggerer). Requests, token requests included, are retried on HTTP 429
    (waiting ``Retry-After`` when sent), 500/502/503/504, malformed bodies, dropped connections and
    time-outs, with exponential backoff and jitter, but only where repeating the request is safe.
    What no retry can fix (a host name that does not resolve, a TLS verification failure, an
    ``https://`` endpoint on a plain-HTTP server, a connection without credentials) fails at once
    with a message that says what to change. Every method returns plain Python data.

    :param communications_mining_conn_id: the Airflow connection id.
    :param timeout: read timeout in seconds, overriding the connection's ``timeout``.
    :param retry_max_attempts: attempts per request, overriding the connection's setting.
    :param retry_max_elapsed: seconds per request across attempts, overriding the connection's setting.
    :param pool_size: HTTP connections kept open for concurrent calls from threads.
    """

    conn_name_attr = "communications_mining_conn_id"
    default_conn_name = "communications_mining_default"
    conn_type = "communications_mining"
    hook_name = "UiPath Communications Mining"

    def __init__(
        self,
        communications_mining_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        retry_max_attempts: int | None = None,
        retry_max_elapsed: float | None = None,
        pool_size: int = 16,
    ) -> None:
        super().__init__()
        self.communications_mining_conn_id = communications_mining_conn_id
        self._timeout_override = timeout
        self._retry_overrides = {"max_attempts": retry_max_attempts, "max_elapsed": retry_max_elapsed}
        self.pool_size = pool_size
        self._sync: SyncTransport | None = None
        self._async: AsyncTransport | None = None

    # -- connection -------------------------------------------------------------------------------

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection's settings, resolved and checked once; its secrets are masked in logs.

        :raises CommunicationsMiningConfigError: for a connection that cannot work.
        """
        from airflow_provider_cm.compat import mask_secret

        settings = self._resolve(self.get_connection(self.communications_mining_conn_id))
        for secret in settings.secrets():
            mask_secret(secret)
        return settings

    def _resolve(self, connection: Any) -> ConnectionSettings:
        return ConnectionSettings.from_connection(
            connection, timeout=self._timeout_override, retry_overrides=self._retry_overrides
        )

    @property
    def endpoint(self) -> str:
        """The API endpoint without a trailing slash, e.g. ``https://cloud.uipath.com/org/tenant/reinfer_``."""
        return self.settings.endpoint

    @property
    def retry_policy(self) -> RetryPolicy:
        """When and how requests are retried."""
        return self.settings.retry_policy

    @property
    def client_credentials(self) -> ClientCredentials | None:
        """The OAuth client credentials of the connection, or ``None`` when it holds an API token."""
        return self.settings.credentials

    @property
    def transport(self) -> SyncTransport:
        """The synchronous transport, built on first use."""
        if self._sync is None:
            self._sync = SyncTransport(self.settings, pool_size=self.pool_size, log=self.log)
        return self._sync

    def get_conn(self) -> requests.Session:
        """The hook's one :class:`requests.Session`."""
        return self.transport.session

    def close(self) -> None:
        """Close the HTTP session (a new one is opened on the next call)."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    # -- requests ---------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        raw_body: bytes | None = None,
        params: Params = None,
        idempotent: bool = True,
    ) -> ApiCall:
        return ApiCall.to_api(
            self.endpoint, method, path, json_body=json_body, raw_body=raw_body, params=params, idempotent=idempotent
        )

    def send(self, method: str, path: str, *, observer: AttemptObserver | None = None, **kwargs: Any) -> Reply:
        """:meth:`request`, returning the :class:`~airflow_provider_cm.hooks.transport.Reply`
        (payload, attempts, and whether an earlier attempt may have taken effect).

        :param observer: called with the error of each failed attempt, retried or not, as it
            happens (e.g. :meth:`~airflow_provider_cm.hooks.concurrency.Slot.observe`).
        """
        return self.transport.send(self._call(method, path, **kwargs), observer=observer)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        raw_body: bytes | None = None,
        params: Params = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """Send one API request with the retry policy and return the parsed payload.

        :param method: HTTP method.
        :param path: path after the endpoint, e.g. ``api/v1/sources/project/name``.
        :param json_body: JSON-serialisable request body.
        :param raw_body: the request body as already-encoded JSON (instead of ``json_body``).
        :param params: query parameters.
        :param idempotent: whether sending the request twice has the same effect as once; only
            such requests are retried after the server may have received them.
        :raises CommunicationsMiningApiError: (a subclass by status) when the API answers an error.
        :raises CommunicationsMiningConnectionError: when no response could be had.
        :raises CommunicationsMiningConfigError: when the connection cannot work as configured.
        """
        reply = self.send(method, path, json_body=json_body, raw_body=raw_body, params=params, idempotent=idempotent)
        return reply.payload

    # -- user, projects ---------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Check the endpoint and credentials with one cheap read (``GET /auth/user``), within seconds.

        Two attempts at most, 10 s to connect and 20 s to read, so the Airflow UI's Test button
        answers quickly; the message says what failed and, where it can, what to change.
        """
        try:
            call = self._call("GET", "auth/user")
            user = self.transport.send(call, policy=TEST_CONNECTION_POLICY, timeouts=TEST_CONNECTION_TIMEOUTS)
        except Exception as exc:
            return False, str(exc)
        found = user.payload.get("user") or {}
        return True, f"Connected to {self.endpoint} as {found.get('username') or found.get('email') or 'user'}"

    def get_current_user(self) -> dict[str, Any]:
        """The token's user (``GET /auth/user``)."""
        return self.request("GET", "auth/user")["user"]

    def list_projects(self) -> list[dict[str, Any]]:
        """All projects the token can see (``GET /api/_private/projects``)."""
        return self.request("GET", "api/_private/projects")["projects"]

    def get_project(self, project: str) -> dict[str, Any]:
        """One project (``GET /api/_private/projects/<project>``)."""
        return self.request("GET", f"api/_private/projects/{resource_path(project)}")["project"]

    def create_project(
        self, project: str, *, title: str | None = None, description: str | None = None
    ) -> dict[str, Any]:
        """Create a project (``PUT /api/_private/projects/<project>``).

        :raises CommunicationsMiningConflictError: if it exists already.
        """
        body = {"project": _without_none(title=title, description=description), "user_ids": []}
        return self.request("PUT", f"api/_private/projects/{resource_path(project)}", json_body=body)["project"]

    # -- sources ----------------------------------------------------------------------------------

    def list_sources(self, project: str | None = None) -> list[dict[str, Any]]:
        """Sources, all or of one project (``GET /api/v1/sources[/<project>]``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/sources
        """
        path = "api/v1/sources" + (f"/{resource_path(project)}" if project else "")
        return self.request("GET", path)["sources"]

    def get_source(self, source: str) -> dict[str, Any]:
        """One source by ``"project/name"`` or ``"id:<id>"`` (``GET /api/v1/sources/...``).

        :raises CommunicationsMiningNotFoundError: if there is no such source.
        """
        return self.request("GET", f"api/v1/sources/{_name_path(source, 'source')}")["source"]

    def create_source(self, source: str, **fields: Any) -> dict[str, Any]:
        """Create a source (``PUT /api/v1/sources/<project>/<name>``).

        :param source: ``"project/name"``.
        :param fields: source fields such as ``title``, ``description``, ``language``.
        :raises CommunicationsMiningConflictError: if it exists already.
        """
        project, name = split_full_name(source, "source")
        body = {"source": _without_none(**fields)}
        return self.request("PUT", f"api/v1/sources/{resource_path(project, name)}", json_body=body)["source"]

    def sync_comments(self, source: str, comments: Sequence[Mapping[str, Any] | bytes]) -> SyncResult:
        """Create or update comments by id (``POST /api/v1/sources/<project>/<name>/sync``).

        Billed per created comment and per updated comment whose text changed; re-sending an
        unchanged comment costs nothing, so the call is safe to retry.
        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/sync-comments

        :param source: ``"project/name"``.
        :param comments: at most 16,384 comments: objects, or their UTF-8 JSON encodings as ``bytes``
            (used as they are, so a caller that has encoded them once need not do it again).
        :return: ``{"new": int, "updated": int, "unchanged": int, "maybe_committed_earlier": bool}``
            (see :class:`SyncResult`: when an earlier attempt may have been carried out, the
            counts describe only the last one).
        :raises ValueError: for more than 16,384 comments, or a comment JSON cannot carry (NaN, infinity).
        :raises CommunicationsMiningBadRequestError: if the API refuses the batch.
        """
        if len(comments) > MAX_SYNC_COMMENTS:
            raise ValueError(f"sync takes at most {MAX_SYNC_COMMENTS} comments, got {len(comments)}")
        project, name = split_full_name(source, "source")
        encoded = b",".join(c if isinstance(c, bytes) else encode_json(c) for c in comments)
        reply = self.send(
            "POST",
            f"api/v1/sources/{resource_path(project, name)}/sync",
            raw_body=b'{"comments":[' + encoded + b"]}",
        )
        body = reply.payload
        return {
            "new": body.get("new", 0),
            "updated": body.get("updated", 0),
            "unchanged": body.get("unchanged", 0),
            "maybe_committed_earlier": reply.maybe_committed_earlier,
        }

    def put_comments(self, source: str, comments: Sequence[Mapping[str, Any]]) -> None:
        """Create comments, refusing ids that already hold different data.

        ``PUT /api/_private/sources/<project>/<name>/comments``, the official CLI's create-only
        route (private; prefer :meth:`sync_comments`, which reports counts). Not retried on 409.

        :raises CommunicationsMiningConflictError: an id already holds different data.
        """
        if len(comments) > MAX_SYNC_COMMENTS:
            raise ValueError(f"put_comments takes at most {MAX_SYNC_COMMENTS} comments, got {len(comments)}")
        project, name = split_full_name(source, "source")
        self.request(
            "PUT",
            f"api/_private/sources/{resource_path(project, name)}/comments",
            json_body={"comments": list(comments)},
        )

    def get_comment(self, source: str, comment_id: str) -> dict[str, Any]:
        """One comment (``GET /api/v1/sources/<project>/<name>/comments/<id>``)."""
        project, name = split_full_name(source, "source")
        return self.request("GET", f"api/v1/sources/{resource_path(project, name, 'comments', comment_id)}")["comment"]

    # -- datasets ---------------------------------------------------------------------------------

    def list_datasets(self, project: str | None = None) -> list[dict[str, Any]]:
        """Datasets, all or of one project (``GET /api/v1/datasets[/<project>]``)."""
        path = "api/v1/datasets" + (f"/{resource_path(project)}" if project else "")
        return self.request("GET", path)["datasets"]

    def get_dataset(self, dataset: str) -> dict[str, Any]:
        """One dataset by ``"project/name"`` or ``"id:<id>"`` (``GET /api/v1/datasets/...``).

        :raises CommunicationsMiningNotFoundError: if there is no such dataset.
        """
        return self.request("GET", f"api/v1/datasets/{_name_path(dataset, 'dataset')}")["dataset"]

    def create_dataset(self, dataset: str, *, source_ids: Sequence[str] = (), **fields: Any) -> dict[str, Any]:
        """Create a dataset over sources (``PUT /api/v1/datasets/<project>/<name>``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/datasets

        :param dataset: ``"project/name"``.
        :param source_ids: ids (not names) of the sources it covers.
        :param fields: other dataset fields, e.g. ``title``, ``has_sentiment``, ``label_defs``.
        :raises CommunicationsMiningConflictError: if it exists already.
        """
        project, name = split_full_name(dataset, "dataset")
        body = {"dataset": {"source_ids": list(source_ids), **_without_none(**fields)}}
        return self.request("PUT", f"api/v1/datasets/{resource_path(project, name)}", json_body=body)["dataset"]

    def update_dataset(self, dataset: str, **fields: Any) -> dict[str, Any]:
        """Update a dataset, e.g. its ``source_ids`` (``POST /api/v1/datasets/<project>/<name>``)."""
        project, name = split_full_name(dataset, "dataset")
        body = {"dataset": _without_none(**fields)}
        return self.request("POST", f"api/v1/datasets/{resource_path(project, name)}", json_body=body)["dataset"]

    def delete_dataset(self, dataset: str) -> None:
        """Delete a dataset (``DELETE /api/v1/datasets/<project>/<name>``); its sources stay."""
        project, name = split_full_name(dataset, "dataset")
        self.request("DELETE", f"api/v1/datasets/{resource_path(project, name)}")

    def update_annotations(
        self,
        dataset: str,
        uid: str,
        *,
        labelling: Sequence[Mapping[str, Any]] | None = None,
        entities: Mapping[str, Any] | None = None,
        moon_forms: Sequence[Mapping[str, Any]] | None = None,
        observer: AttemptObserver | None = None,
    ) -> dict[str, Any]:
        """Set one comment's labels and entities in a dataset.

        ``POST /api/_private/datasets/<project>/<name>/labellings/<uid>``, the route the official
        ``re`` CLI uses (no public route exists). A kind left ``None`` is unchanged; an empty list
        removes what is there. Writing the same annotations again changes nothing.

        :param dataset: ``"project/name"``.
        :param uid: ``"<source_id>.<comment_id>"``.
        :param labelling: label groups, ``[{"group": "default", "assigned": [{"name": "A > B"}]}]``.
        :param entities: ``{"assigned": [...], "dismissed": [...]}``.
        :param moon_forms: field-extraction annotations.
        :param observer: called with the error of each failed attempt (see :meth:`send`).
        :return: the annotated comment.
        :raises CommunicationsMiningNotFoundError: if the dataset or comment does not exist.
        """
        project, name = split_full_name(dataset, "dataset")
        body = _without_none(labelling=labelling, entities=entities, moon_forms=moon_forms)
        return self.send(
            "POST",
            f"api/_private/datasets/{resource_path(project, name, 'labellings', uid)}",
            json_body=body,
            observer=observer,
        ).payload

    def get_annotations(
        self, dataset: str, uids: Sequence[str], *, observer: AttemptObserver | None = None
    ) -> list[dict[str, Any]]:
        """Annotated comments by uid (``GET /api/_private/datasets/<project>/<name>/labellings?id=...``).

        Many uids are read in several requests (:func:`annotation_read_chunks`), so no URL grows
        past what servers accept.

        :param dataset: ``"project/name"``.
        :param uids: ``"<source_id>.<comment_id>"`` of each comment.
        :param observer: called with the error of each failed attempt (see :meth:`send`).
        :return: ``[{"comment": {...}, "labelling"?: [...], "entities"?: {...}, "moon_forms"?: [...]}]``,
            one per comment found.
        :raises CommunicationsMiningNotFoundError: if the dataset, or a comment, does not exist.
        """
        path = self._labellings_path(dataset)
        results: list[dict[str, Any]] = []
        for chunk in annotation_read_chunks(uids):
            params = [("id", uid) for uid in chunk]
            results.extend(self.send("GET", path, params=params, observer=observer).payload["results"])
        return results

    def iter_annotations(
        self, dataset: str, source_id: str, *, return_predictions: bool = False, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every annotated (reviewed) comment of a source in a dataset, one page in memory.

        ``GET /api/_private/datasets/<project>/<name>/labellings?source_id=<id>&return_predictions=<bool>``
        ``&after=<cursor>&limit=<n>``, following ``after`` as the official CLI does: it stops at the
        first page with no results (not when ``after`` is null).

        :param dataset: ``"project/name"``.
        :param source_id: the source's id (not its name).
        :param return_predictions: include the model's predicted labels and entities.
        :param limit: comments per page, 1 to :data:`MAX_ANNOTATION_PAGE` (default: the server's).
        :raises CommunicationsMiningNotFoundError: if the dataset does not exist.
        :raises CommunicationsMiningProtocolError: if a page with results does not move ``after``
            on (or drops it), which would read the same comments forever.
        """
        if limit is not None and not 1 <= limit <= MAX_ANNOTATION_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_ANNOTATION_PAGE}, got {limit}")
        path = self._labellings_path(dataset)
        after: str | None = None
        while True:
            params: list[tuple[str, Any]] = [
                ("source_id", source_id),
                ("return_predictions", "true" if return_predictions else "false"),
            ]
            if after is not None:
                params.append(("after", after))
            if limit is not None:
                params.append(("limit", limit))
            page = self.request("GET", path, params=params)
            results = page.get("results") or []
            if not results:
                return
            next_after = page.get("after")
            if not next_after or next_after == after:
                raise CommunicationsMiningProtocolError(
                    200, f"GET /{path}", "a page of annotations did not move the 'after' cursor on"
                )
            yield from results
            after = next_after

    def _labellings_path(self, dataset: str) -> str:
        project, name = split_full_name(dataset, "dataset")
        return f"api/_private/datasets/{resource_path(project, name)}/labellings"

    def export_page(
        self,
        dataset: str,
        *,
        start: str | None = None,
        end: str | None = None,
        order_by: str = "timestamp",
        source_ids: Sequence[str] | None = None,
        comment_uids: Sequence[str] | None = None,
        limit: int = MAX_EXPORT_LIMIT,
        continuation: str | None = None,
        observer: AttemptObserver | None = None,
    ) -> dict[str, Any]:
        """One page of ``POST /api/v1/datasets/<project>/<name>/export``.

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/export-a-dataset

        :param start: ISO-8601 time, inclusive (``from``).
        :param end: ISO-8601 time, **inclusive** (``to``), as the API defines it.
        :param order_by: ``"timestamp"`` or ``"created_at"``; also the time ``start``/``end`` filter on.
        :param limit: comments per page, 1 to 256.
        :param observer: called with the error of each failed attempt (see :meth:`send`).
        :return: ``{"comments": [...], "continuation": str | None}``.
        """
        if order_by not in ("timestamp", "created_at"):
            raise ValueError(f"order_by must be 'timestamp' or 'created_at', got {order_by!r}")
        if not 1 <= limit <= MAX_EXPORT_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_EXPORT_LIMIT}, got {limit}")
        project, name = split_full_name(dataset, "dataset")
        body: dict[str, Any] = {"limit": limit}
        if comment_uids:
            body["comment_uids"] = list(comment_uids)
        else:
            body["order_by"] = order_by
            body.update(_without_none(**{"from": start, "to": end}))
            if source_ids:
                body["source_ids"] = list(source_ids)
        if continuation:
            body["continuation"] = continuation
        path = f"api/v1/datasets/{resource_path(project, name)}/export"
        page = self.send("POST", path, json_body=body, observer=observer).payload
        return {"comments": page.get("comments", []), "continuation": page.get("continuation")}

    def iter_export_pages(self, dataset: str, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        """Yield export pages, following ``continuation`` to the end (arguments of :meth:`export_page`).

        :raises CommunicationsMiningProtocolError: if a page's ``continuation`` repeats the one sent.
        """
        continuation = kwargs.pop("continuation", None)
        while True:
            page = self.export_page(dataset, continuation=continuation, **kwargs)
            if page["comments"]:
                yield page["comments"]
            next_continuation = page["continuation"]
            if not next_continuation:
                return
            _check_continuation(dataset, continuation, next_continuation)
            continuation = next_continuation

    def iter_export(self, dataset: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield every exported comment (arguments of :meth:`export_page`), one page in memory at a time."""
        for page in self.iter_export_pages(dataset, **kwargs):
            yield from page

    @overload
    def iter_window_pages(
        self,
        dataset: str,
        start: datetime,
        end: datetime,
        *,
        order_by: str = ...,
        source_ids: Sequence[str] | None = ...,
        page_size: int = ...,
        concurrency: int = ...,
        transform: None = ...,
    ) -> Iterator[list[dict[str, Any]]]: ...

    @overload
    def iter_window_pages(
        self,
        dataset: str,
        start: datetime,
        end: datetime,
        *,
        order_by: str = ...,
        source_ids: Sequence[str] | None = ...,
        page_size: int = ...,
        concurrency: int = ...,
        transform: Callable[[list[dict[str, Any]]], T],
    ) -> Iterator[T]: ...

    def iter_window_pages(
        self,
        dataset: str,
        start: datetime,
        end: datetime,
        *,
        order_by: str = "timestamp",
        source_ids: Sequence[str] | None = None,
        page_size: int = MAX_EXPORT_LIMIT,
        concurrency: int = 1,
        transform: Callable[[list[dict[str, Any]]], Any] | None = None,
    ) -> Iterator[Any]:
        """Pages of the exported comments whose ``order_by`` time is in ``[start, end)``, in the export's order.

        Calls ``POST /api/v1/datasets/<project>/<name>/export``
        (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/export-a-dataset).
        The route's ``to`` is inclusive; the comments exactly at ``end`` are dropped
        (:func:`~airflow_provider_cm.windows.before_end`), so consecutive windows hold each comment once.

        With ``concurrency=1`` one ``continuation`` chain runs over the window and each page is
        yielded as it comes (possibly shorter than ``page_size``, or empty, once the comments at
        ``end`` are dropped). With ``concurrency=N`` the window is cut into time slices exported
        ``N`` at a time (:class:`~airflow_provider_cm.hooks.export_slices.SlicedExport`); their
        pages are yielded slice after slice in time order, so the comments come in exactly the
        order, ties included, of the serial export; pages are not empty but may be shorter. The
        slices' requests are paced after a refusal (HTTP 429/503): every slice waits out its
        ``Retry-After`` and requests start below the rate the tenant was serving
        (:class:`~airflow_provider_cm.hooks.pacing.RatePacer`).
        Memory holds about one page per slice in flight; pages fetched ahead of the consumer wait
        in temporary files (deleted as they are read, and when the iteration stops).

        :param dataset: ``"project/dataset"``.
        :param start: window start, inclusive (timezone-aware, or UTC).
        :param end: window end, exclusive.
        :param order_by: ``"timestamp"`` or ``"created_at"``: the time the window applies to.
        :param source_ids: only comments of these source ids.
        :param page_size: comments per request, 1 to 256.
        :param concurrency: slices exported at once, 1 to 64.
        :param transform: if given, each page (a list of exported comments) is passed through it
            and its result yielded instead; with slices it runs in the worker threads, before the
            page waits on disk (so it must be thread-safe and its result must pickle): render
            output there, and what waits is the rendered text.
        :raises ValueError: for a bad argument or an empty window.
        :raises CommunicationsMiningApiError: (or another :class:`CommunicationsMiningError`) if a
            request fails after retries; with slices, the first failure stops the others, and its
            message names the slice, ``(export slice [<from>, <to>))``.
        """
        check_concurrency(concurrency)
        if not 1 <= page_size <= MAX_EXPORT_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_EXPORT_LIMIT}, got {page_size}")
        sources = list(source_ids) if source_ids else None
        apply = transform or _as_is
        if concurrency == 1:
            end_key = api_time(end)
            for page in self.iter_export_pages(
                dataset, start=api_time(start), end=end_key, order_by=order_by, source_ids=sources, limit=page_size
            ):
                yield apply(before_end(page, end, order_by, end_key))
            return

        pacer = RatePacer()

        def refused(error: BaseException) -> None:
            if is_throttling(error):
                pacer.refused(getattr(error, "retry_after", None))

        def fetch(low: datetime, high: datetime, continuation: str | None) -> dict[str, Any]:
            pacer.wait()
            page = self.export_page(
                dataset,
                start=api_time(low),
                end=api_time(high),
                order_by=order_by,
                source_ids=sources,
                limit=page_size,
                continuation=continuation,
                observer=refused,
            )
            pacer.served()
            return page

        def check(previous: str | None, following: str | None) -> None:
            if following:
                _check_continuation(dataset, previous, following)

        try:
            yield from SlicedExport(
                fetch,
                check,
                start,
                end,
                order_by=order_by,
                page_size=page_size,
                concurrency=concurrency,
                transform=apply,
                log=self.log,
            )
        finally:
            if pacer.report().refusals:
                self.log.info("Export slices: %s", pacer.report().text())

    # -- streams --------------------------------------------------------------------------------

    def _stream_path(self, dataset: str, stream: str | None = None, action: str | None = None) -> str:
        project, name = split_full_name(dataset, "dataset")
        segments = [project, name, "streams"] + ([stream] if stream else []) + ([action] if action else [])
        return "api/v1/datasets/" + resource_path(*segments)

    def list_streams(self, dataset: str) -> list[dict[str, Any]]:
        """A dataset's streams (``GET /api/v1/datasets/<project>/<dataset>/streams``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/get-all-streams
        """
        return self.request("GET", self._stream_path(dataset))["streams"]

    def get_stream(self, dataset: str, stream: str) -> dict[str, Any]:
        """One stream (``GET .../streams/<stream>``).

        :raises CommunicationsMiningNotFoundError: if the dataset or stream does not exist.
        """
        return self.request("GET", self._stream_path(dataset, stream))["stream"]

    def put_stream(
        self,
        dataset: str,
        stream: str,
        *,
        model_version: int | None = None,
        label_thresholds: Mapping[str, float] | None = None,
        comment_filter: Mapping[str, Any] | None = None,
        title: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create a stream, or replace its definition (``PUT /api/v1/datasets/<project>/<dataset>/streams``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/create-a-stream

        :param model_version: the pinned model version whose predictions results carry (an
            integer: resolve ``live``/``staging`` first with :meth:`resolve_model_tag`).
        :param label_thresholds: ``{"Parent > Child": 0.4}``: only these labels, at or above
            their thresholds (0 to 1), are attached to results.
        :param comment_filter: e.g. ``{"user_properties": {"string:Channel": {"one_of": ["email"]}}}``.
        """
        body: dict[str, Any] = {"name": stream, **_without_none(title=title, description=description)}
        if comment_filter is not None:
            body["comment_filter"] = dict(comment_filter)
        if model_version is not None:
            body["model"] = {"version": int(model_version)}
            if label_thresholds is not None:
                body["model"]["label_thresholds"] = [
                    {"name": label_levels(name), "threshold": float(threshold)}
                    for name, threshold in label_thresholds.items()
                ]
        return self.request("PUT", self._stream_path(dataset), json_body={"stream": body})["stream"]

    def delete_stream(self, dataset: str, stream: str) -> None:
        """Delete a stream (``DELETE .../streams/<stream>``)."""
        self.request("DELETE", self._stream_path(dataset, stream))

    def fetch_stream(
        self, dataset: str, stream: str, *, size: int = 16, max_filtered: int | None = None
    ) -> dict[str, Any]:
        """The next batch of a stream, without moving it (``POST .../streams/<stream>/fetch``).

        Docs: https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/fetch-comments-from-a-stream-legacy.md
        Fetching does not move the stream, so the call is safe to retry.

        :param size: comments to look at, 1 to 1,024 (filtered ones count too).
        :return: ``{"results": [{"comment", "labels", "entities", "sequence_id"}], "filtered": int,
            "is_end_sequence": bool, "sequence_id": str}``; ``sequence_id`` covers the whole batch.
        """
        if not 1 <= size <= MAX_STREAM_FETCH:
            raise ValueError(f"size must be between 1 and {MAX_STREAM_FETCH}, got {size}")
        body = {"size": size, **_without_none(max_filtered=max_filtered)}
        return parse_stream_batch(self.request("POST", self._stream_path(dataset, stream, "fetch"), json_body=body))

    def advance_stream(self, dataset: str, stream: str, sequence_id: str) -> None:
        """Acknowledge everything up to ``sequence_id`` (``POST .../streams/<stream>/advance``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/advance-a-stream
        Advancing to the same ``sequence_id`` twice is harmless, so the call is retried.
        """
        if not sequence_id:
            raise ValueError("sequence_id must not be empty")
        self.request("POST", self._stream_path(dataset, stream, "advance"), json_body={"sequence_id": sequence_id})

    def reset_stream(self, dataset: str, stream: str, to_comment_created_at: str) -> dict[str, Any]:
        """Move a stream to the first comment uploaded at or after a time (``POST .../streams/<stream>/reset``).

        Docs: https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/reset-a-stream.md

        :param to_comment_created_at: ISO-8601 time, compared with comments' ``created_at``.
        :return: ``{"sequence_id": str, "stream": {...}}``.
        """
        body = {"to_comment_created_at": to_comment_created_at}
        return self.request("POST", self._stream_path(dataset, stream, "reset"), json_body=body, idempotent=True)

    def tag_exceptions(self, dataset: str, stream: str, uids: Sequence[str], exception_type: str) -> None:
        """Tag comments as exceptions of a stream (``PUT .../streams/<stream>/exceptions``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/tag-an-exception

        :param uids: ``"<source_id>.<comment_id>"`` of each comment.
        :param exception_type: a short text saying what went wrong, e.g. ``"No Prediction"``.
        """
        if not uids:
            return
        body = {"exceptions": [{"uid": uid, "metadata": {"type": exception_type}} for uid in uids]}
        self.request("PUT", self._stream_path(dataset, stream, "exceptions"), json_body=body)

    def untag_exceptions(self, dataset: str, stream: str, uids: Sequence[str]) -> None:
        """Remove exception tags (``DELETE .../streams/<stream>/exceptions?uid=...``)."""
        if uids:
            params = [("uid", uid) for uid in uids]
            self.request("DELETE", self._stream_path(dataset, stream, "exceptions"), params=params)

    # -- models -----------------------------------------------------------------------------------

    def get_model_tags(self, dataset: str) -> Any:
        """The dataset's model tags as the API returns them (``GET /api/v1/datasets/<p>/<d>/model-tags``).

        Documented only by the legacy Re:infer docs; needs the "Model Admin" permission. Use
        :meth:`resolve_model_tag` for a version number.
        """
        project, name = split_full_name(dataset, "dataset")
        body = self.request("GET", f"api/v1/datasets/{resource_path(project, name)}/model-tags")
        return body.get("model_tags", body.get("tags"))

    def resolve_model_tag(self, dataset: str, tag: str) -> int:
        """The pinned model version a tag (``live``, ``staging``) points to.

        :raises CommunicationsMiningTagError: if the tag is unknown or the response has no
            recognisable shape.
        """
        return version_for_tag(self.get_model_tags(dataset), tag, dataset)

    def predict(
        self,
        dataset: str,
        version: int | str,
        documents: Sequence[Mapping[str, Any]],
        *,
        threshold: float | str | None = None,
        labels: Mapping[str, float] | None = None,
    ) -> list[dict[str, Any]]:
        """Predict labels for comments that are not in the platform.

        ``POST /api/v1/datasets/<project>/<dataset>/labellers/<version>/predict``; billed per document.
        Docs: https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/predictions.md
        Not retried once sent (each attempt would be billed).

        :param version: a pinned version number, or ``"live"`` / ``"staging"``.
        :param documents: at most 4,096 comment-shaped objects (``messages``, ``timestamp``, ...).
        :param threshold: 0 to 1 (API default 0.25), or ``"auto"``.
        :param labels: per-label thresholds ``{"Parent > Child": 0.5}``, restricting the labels.
        :return: one prediction per document, in order: ``{"labels": [...], "entities": [...]}``.
        """
        if not documents or len(documents) > MAX_PREDICT_DOCUMENTS:
            raise ValueError(f"predict takes 1 to {MAX_PREDICT_DOCUMENTS} documents, got {len(documents)}")
        project, name = split_full_name(dataset, "dataset")
        body: dict[str, Any] = {"documents": list(documents)}
        if threshold is not None:
            body["threshold"] = threshold
        if labels:
            body["labels"] = [{"name": label_levels(n), "threshold": float(t)} for n, t in labels.items()]
        path = f"api/v1/datasets/{resource_path(project, name, 'labellers', str(version))}/predict"
        return self.request("POST", path, json_body=body, idempotent=False)["predictions"]

    # -- set-up: create unless it exists (if_exists) --------------------------------------------------

    def update_project(
        self, project: str, *, title: str | None = None, description: str | None = None
    ) -> dict[str, Any]:
        """Change a project's title or description (``POST /api/_private/projects/<project>``, private)."""
        body = {"project": _without_none(title=title, description=description)}
        return self.request("POST", f"api/_private/projects/{resource_path(project)}", json_body=body)["project"]

    def update_source(self, source: str, **fields: Any) -> dict[str, Any]:
        """Change a source's fields (``POST /api/v1/sources/<project>/<name>``).

        The route takes ``title``, ``description``, ``should_translate``, ``sensitive_properties``,
        ``bucket_id`` and ``email_transform_tag``; ``language`` is set at creation only.
        """
        project, name = split_full_name(source, "source")
        body = {"source": _without_none(**fields)}
        return self.request("POST", f"api/v1/sources/{resource_path(project, name)}", json_body=body)["source"]

    def source_id(self, source: str) -> str:
        """The id of a source given as ``"project/name"``, ``"id:<id>"`` or a bare id.

        :raises CommunicationsMiningNotFoundError: if there is no such source, saying so.
        """
        reference = source if "/" in source or source.startswith("id:") else f"id:{source}"
        try:
            return str(self.get_source(reference)["id"])
        except CommunicationsMiningNotFoundError as exc:
            raise CommunicationsMiningNotFoundError(
                404, exc.route, f"source {source!r} does not exist: create it first (give 'project/name' or its id)"
            ) from None

    def ensure_project(
        self,
        project: str,
        *,
        title: str | None = None,
        description: str | None = None,
        if_exists: str = "ignore",
    ) -> EnsuredObject:
        """Create a project unless it exists (``GET``, then ``PUT`` or ``POST /api/_private/projects/<project>``).

        :param if_exists: ``"ignore"``, ``"fail"`` or ``"update"`` (see :mod:`~airflow_provider_cm.hooks.if_exists`).
        :raises CommunicationsMiningConflictError: it exists and ``if_exists="fail"``.
        """
        asked = _without_none(title=title, description=description)
        return Setup(
            "project",
            project,
            asked,
            get=lambda: self.get_project(project),
            create=lambda fields: self.create_project(project, **fields),
            update=lambda _, fields: self.update_project(project, **fields),
            log=self.log,
        ).run(if_exists, f"PUT /api/_private/projects/{project}")

    def ensure_source(self, source: str, *, if_exists: str = "ignore", **fields: Any) -> EnsuredObject:
        """Create a source unless it exists (``GET``, then ``PUT`` or ``POST /api/v1/sources/<project>/<name>``).

        :param source: ``"project/name"``.
        :param fields: ``title``, ``description``, ``language``, ``should_translate``,
            ``sensitive_properties`` (``None`` values are left out).
        :param if_exists: ``"ignore"``, ``"fail"`` or ``"update"`` (``language`` cannot be updated).
        :raises CommunicationsMiningConflictError: it exists and ``if_exists="fail"``.
        """
        split_full_name(source, "source")
        return Setup(
            "source",
            source,
            _without_none(**fields),
            get=lambda: self.get_source(source),
            create=lambda asked: self.create_source(source, **asked),
            update=lambda _, changed: self.update_source(source, **changed),
            log=self.log,
        ).run(if_exists, f"PUT /api/v1/sources/{source}")

    def ensure_dataset(
        self,
        dataset: str,
        *,
        sources: Sequence[str] | None = None,
        if_exists: str = "ignore",
        **fields: Any,
    ) -> EnsuredObject:
        """Create a dataset unless it exists (``GET``, then ``PUT`` or ``POST /api/v1/datasets/<project>/<name>``).

        :param dataset: ``"project/name"``.
        :param sources: its sources, as ``"project/name"`` or ids (looked up first: each must exist).
        :param fields: ``title``, ``description``, ``has_sentiment``, ``model_family``,
            ``label_defs``, ``label_groups``, ``entity_defs`` (``None`` values are left out).
        :param if_exists: ``"ignore"``, ``"fail"`` or ``"update"`` (only ``sources``, ``title``,
            ``description`` and ``entity_defs`` can be updated).
        :raises CommunicationsMiningConflictError: it exists and ``if_exists="fail"``.
        :raises CommunicationsMiningNotFoundError: a source does not exist.
        """
        split_full_name(dataset, "dataset")
        asked = _without_none(**fields)
        if sources is not None:
            asked["source_ids"] = list(dict.fromkeys(self.source_id(source) for source in sources))
        return Setup(
            "dataset",
            dataset,
            asked,
            get=lambda: self.get_dataset(dataset),
            create=lambda wanted: self.create_dataset(dataset, **wanted),
            update=lambda _, changed: self.update_dataset(dataset, **changed),
            log=self.log,
        ).run(if_exists, f"PUT /api/v1/datasets/{dataset}")

    def ensure_stream(
        self,
        dataset: str,
        stream: str,
        *,
        model_version: int | None = None,
        label_thresholds: Mapping[str, float] | None = None,
        comment_filter: Mapping[str, Any] | None = None,
        title: str | None = None,
        description: str | None = None,
        if_exists: str = "ignore",
    ) -> EnsuredObject:
        """Create a stream unless it exists (``GET .../streams/<stream>``, then ``PUT .../streams``).

        The API's ``PUT`` creates or replaces, so ``"update"`` sends the existing definition with
        the asked fields changed (fields left out keep their values; the stream's position stays).
        Arguments as :meth:`put_stream`.

        :param if_exists: ``"ignore"``, ``"fail"`` or ``"update"``.
        :raises ValueError: ``label_thresholds`` without ``model_version``.
        :raises CommunicationsMiningConflictError: it exists and ``if_exists="fail"``.
        """
        if label_thresholds is not None and model_version is None:
            raise ValueError("label_thresholds apply to a model's predictions: give model_version too")
        asked: dict[str, Any] = _without_none(title=title, description=description)
        if comment_filter is not None:
            asked["comment_filter"] = dict(comment_filter)
        if model_version is not None:
            thresholds = label_thresholds or {}
            asked["model"] = {
                "version": int(model_version),
                "label_thresholds": [{"name": label_levels(n), "threshold": float(t)} for n, t in thresholds.items()],
            }

        def replace(existing: dict[str, Any], changed: dict[str, Any]) -> dict[str, Any]:
            keep = {key: existing.get(key) for key in ("title", "description", "comment_filter", "model")}
            body = {"name": stream, **_without_none(**keep), **changed}
            return self.request("PUT", self._stream_path(dataset), json_body={"stream": body})["stream"]

        return Setup(
            "stream",
            f"{dataset}/{stream}",
            asked,
            get=lambda: self.get_stream(dataset, stream),
            create=lambda wanted: replace({}, wanted),
            update=replace,
            log=self.log,
        ).run(if_exists, f"PUT /api/v1/datasets/{dataset}/streams")

    # -- asynchronous (triggers) ------------------------------------------------------------------

    async def atransport(self) -> AsyncTransport:
        """The asynchronous transport, built on first use in the running event loop.

        The connection is looked up asynchronously (unless the synchronous path has already
        resolved it) and its secrets masked with the async masker. Both paths share one
        :class:`~airflow_provider_cm.hooks.settings.ConnectionSettings`, so one OAuth token serves
        both. The transport (one :class:`httpx.AsyncClient`) serves every later call of this hook;
        close it with :meth:`aclose`.
        """
        if self._async is None:
            settings = self.__dict__.get("settings")
            if settings is None:
                from airflow_provider_cm.compat import amask_secret

                settings = self._resolve(await self.aget_connection(self.communications_mining_conn_id))
                for secret in settings.secrets():
                    await amask_secret(secret)
                self.__dict__["settings"] = settings  # one settings and credentials object for both paths
            self._async = AsyncTransport(settings, log=self.log)
        return self._async

    async def aclose(self) -> None:
        """Close the asynchronous transport (a new one is built on the next call)."""
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    async def arequest(self, method: str, path: str, *, json_body: Any = None) -> dict[str, Any]:
        """:meth:`request` for the triggerer's event loop, on the hook's :class:`httpx.AsyncClient`."""
        transport = await self.atransport()
        call = ApiCall.to_api(transport.settings.endpoint, method, path, json_body=json_body)
        return (await transport.send(call)).payload

    async def afetch_stream(self, dataset: str, stream: str, *, size: int = 16) -> dict[str, Any]:
        """:meth:`fetch_stream` for triggers."""
        if not 1 <= size <= MAX_STREAM_FETCH:
            raise ValueError(f"size must be between 1 and {MAX_STREAM_FETCH}, got {size}")
        body = await self.arequest("POST", self._stream_path(dataset, stream, "fetch"), json_body={"size": size})
        return parse_stream_batch(body)


def parse_stream_batch(body: dict[str, Any]) -> dict[str, Any]:
    """A fetched stream batch as plain data, with label names as ``"Parent > Child"`` strings.

    ``body`` is a freshly parsed response: its results are renamed in place and handed on, not
    copied (a batch holds up to 1,024 results of a dozen labels each; copies cost allocations and
    the garbage collector's passes over the worker's whole heap).
    """
    results = body.get("results") or []
    for result in results:
        labels = result.get("labels") or []
        for label in labels:
            label["name"] = label_name(label.get("name"))
        result["labels"] = labels
    return {
        "results": results,
        "filtered": int(body.get("filtered") or 0),
        "is_end_sequence": bool(body.get("is_end_sequence", False)),
        "sequence_id": body.get("sequence_id"),
    }


def version_for_tag(tags: Any, tag: str, dataset: str) -> int:
    """Find ``tag``'s version in a ``model-tags`` response, whatever its documented-or-not shape.

    Accepted: a list of ``{"name"|"tag": ..., "version": ...}`` objects, or a ``{tag: version}``
    map (the version may itself be ``{"version": n}``).

    :raises CommunicationsMiningTagError: for an unknown tag or an unrecognised shape.
    """
    found: dict[str, Any] = {}
    if isinstance(tags, list):
        for item in tags:
            if isinstance(item, dict) and (item.get("name") or item.get("tag")) is not None:
                found[str(item.get("name") or item.get("tag"))] = item.get("version")
    elif isinstance(tags, dict):
        found = {str(k): v.get("version") if isinstance(v, dict) else v for k, v in tags.items()}
    else:
        raise CommunicationsMiningTagError(f"the model-tags response of {dataset} has an unrecognised shape: {tags!r}")
    if tag not in found:
        known = ", ".join(sorted(found)) or "none"
        raise CommunicationsMiningTagError(f"dataset {dataset} has no model tagged {tag!r} (tags: {known})")
    version = found[tag]
    if isinstance(version, bool) or not isinstance(version, (int, str)) or not str(version).isdigit():
        raise CommunicationsMiningTagError(f"tag {tag!r} of {dataset} points to {version!r}, not a version number")
    return int(version)


def _as_is(page: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return page


def _check_continuation(dataset: str, sent: str | None, received: str) -> None:
    """Raise if the export route answered a page with the continuation it was sent (it would loop)."""
    if received == sent:
        raise CommunicationsMiningProtocolError(
            200, f"POST /api/v1/datasets/{dataset}/export", "continuation did not advance"
        )


def annotation_read_chunks(uids: Sequence[str]) -> Iterator[list[str]]:
    """Split uids into the groups one annotation read asks for: at most
    :data:`MAX_ANNOTATION_READ_IDS` uids and :data:`MAX_ANNOTATION_READ_QUERY` bytes of query each."""
    chunk: list[str] = []
    size = 0
    for uid in uids:
        cost = len("id=") + len(quote(uid, safe="")) + 1
        if chunk and (len(chunk) >= MAX_ANNOTATION_READ_IDS or size + cost > MAX_ANNOTATION_READ_QUERY):
            yield chunk
            chunk, size = [], 0
        chunk.append(uid)
        size += cost
    if chunk:
        yield chunk


def _name_path(name: str, kind: str) -> str:
    if name.startswith("id:"):
        return resource_path(name)
    return resource_path(*split_full_name(name, kind))


def _without_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
