"""The base hook: a Communications Mining connection, its transports and the request pipeline.

Everything that is not one API route: the connection's settings (resolved once, secrets masked),
the synchronous transport for workers and the asynchronous one for the triggerer, retries, the
connection test. :class:`~airflow_provider_cm.hooks.communications_mining.CommunicationsMiningHook`
adds one thin method per route on top.

API reference: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/using-the-api
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook

from airflow_provider_cm.api import routes
from airflow_provider_cm.client.auth import ClientCredentials
from airflow_provider_cm.client.retry import RetryPolicy
from airflow_provider_cm.client.settings import ConnectionSettings
from airflow_provider_cm.client.transport import ApiCall, AsyncTransport, AttemptObserver, Params, Reply, SyncTransport

#: ``test_connection`` answers within seconds: two attempts, at most 10 s connecting and 20 s reading.
TEST_CONNECTION_POLICY = RetryPolicy(max_attempts=2, max_elapsed=15.0, initial_wait=0.5, max_wait=2.0)
TEST_CONNECTION_TIMEOUTS = (10.0, 20.0)


class CommunicationsMiningBaseHook(BaseHook):
    """The connection to the UiPath Communications Mining API: settings, transports and the request pipeline.

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
      (:mod:`airflow_provider_cm.common.connection_form`): ``verify`` (true or false, default true),
      ``ca_bundle`` (path of a CA bundle file or directory to verify with; a path in ``verify``
      also still works), ``timeout`` (read timeout in seconds, default 120), ``connect_timeout``
      (seconds, default 10), ``proxies`` (a requests proxy map such as
      ``{"https": "http://proxy:3128"}``), and the retry settings ``retry_max_attempts``
      (default 5), ``retry_max_elapsed`` (seconds, default 300), ``retry_initial_wait`` (seconds,
      default 1), ``retry_max_wait`` (seconds, default 30) and ``retry_retry_after_cap`` (seconds,
      default 120). An extra stored empty (``null`` or ``""``) means its default.

    The settings are resolved once (:class:`~airflow_provider_cm.client.settings.ConnectionSettings`)
    and serve both transports: :class:`~airflow_provider_cm.client.transport.SyncTransport` for the
    route methods (workers) and :class:`~airflow_provider_cm.client.transport.AsyncTransport` for the
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
        from airflow_provider_cm.common.compat import mask_secret

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
            from airflow_provider_cm.common.compat import mask_secret

            self._sync = SyncTransport(self.settings, pool_size=self.pool_size, log=self.log, mask=mask_secret)
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
        idempotent: bool | None = None,
    ) -> ApiCall:
        return ApiCall.to_api(
            self.endpoint, method, path, json_body=json_body, raw_body=raw_body, params=params, idempotent=idempotent
        )

    def send(self, method: str, path: str, *, observer: AttemptObserver | None = None, **kwargs: Any) -> Reply:
        """:meth:`request`, returning the :class:`~airflow_provider_cm.client.transport.Reply`
        (payload, attempts, and whether an earlier attempt may have taken effect).

        :param observer: called with the error of each failed attempt, retried or not, as it
            happens (e.g. :meth:`~airflow_provider_cm.client.concurrency.Slot.observe`).
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
        idempotent: bool | None = None,
    ) -> dict[str, Any]:
        """Send one API request with the retry policy and return the parsed payload.

        :param method: HTTP method.
        :param path: path after the endpoint, e.g. ``api/v1/sources/project/name``.
        :param json_body: JSON-serialisable request body.
        :param raw_body: the request body as already-encoded JSON (instead of ``json_body``).
        :param params: query parameters.
        :param idempotent: whether sending the request twice has the same effect as once; only
            such requests are retried after the server may have received them. ``None`` (the
            default) takes the rule of the route's entry in :mod:`airflow_provider_cm.api.routes`;
            a path no entry matches is not resent.
        :raises CommunicationsMiningApiError: (a subclass by status) when the API answers an error.
        :raises CommunicationsMiningConnectionError: when no response could be had.
        :raises CommunicationsMiningConfigError: when the connection cannot work as configured.
        """
        reply = self.send(method, path, json_body=json_body, raw_body=raw_body, params=params, idempotent=idempotent)
        return reply.payload

    # -- connection test ---------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Check the endpoint and credentials with one cheap read (``GET /auth/user``), within seconds.

        Two attempts at most, 10 s to connect and 20 s to read, so the Airflow UI's Test button
        answers quickly; the message says what failed and, where it can, what to change.
        """
        try:
            call = self._call("GET", routes.CURRENT_USER.path)
            user = self.transport.send(call, policy=TEST_CONNECTION_POLICY, timeouts=TEST_CONNECTION_TIMEOUTS)
        except Exception as exc:
            return False, str(exc)
        found = user.payload.get("user") or {}
        return True, f"Connected to {self.endpoint} as {found.get('username') or found.get('email') or 'user'}"

    # -- asynchronous (triggers) ------------------------------------------------------------------

    async def atransport(self) -> AsyncTransport:
        """The asynchronous transport, built on first use in the running event loop.

        The connection is looked up asynchronously (unless the synchronous path has already
        resolved it) and its secrets masked with the async masker. Both paths share one
        :class:`~airflow_provider_cm.client.settings.ConnectionSettings`, so one OAuth token serves
        both. The transport (one :class:`httpx.AsyncClient`) serves every later call of this hook;
        close it with :meth:`aclose`.
        """
        if self._async is None:
            settings = self.__dict__.get("settings")
            if settings is None:
                from airflow_provider_cm.common.compat import amask_secret

                settings = self._resolve(await self.aget_connection(self.communications_mining_conn_id))
                for secret in settings.secrets():
                    await amask_secret(secret)
                self.__dict__["settings"] = settings  # one settings and credentials object for both paths
            from airflow_provider_cm.common.compat import amask_secret

            self._async = AsyncTransport(settings, log=self.log, amask=amask_secret)
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
