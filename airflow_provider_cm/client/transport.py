"""The hook's one request pipeline, with a synchronous and an asynchronous adapter.

Everything about a request except the I/O is decided once, here: the URL and body
(:class:`ApiCall`), the headers and the bearer token (an API token, or an OAuth token fetched
through the same retry policy as every request, cached and shared by both adapters), how a
response becomes a payload or a typed error (:func:`parse_response`), how a failure to get a
response is described and whether a retry can help (:func:`connection_failure`), and the retry
policy itself. :class:`SyncTransport` sends with one :class:`requests.Session` (workers);
:class:`AsyncTransport` with one :class:`httpx.AsyncClient` (the triggerer); both honour the
connection's ``verify``, proxies and time-outs in the same way, for API and token requests alike.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from airflow_provider_cm.api.routes import may_resend
from airflow_provider_cm.client.auth import ClientCredentials
from airflow_provider_cm.client.retry import RetryPolicy, mark_exhausted, may_have_taken_effect, parse_retry_after
from airflow_provider_cm.client.settings import ConnectionSettings
from airflow_provider_cm.exceptions import (
    CommunicationsMiningApiError,
    CommunicationsMiningAuthError,
    CommunicationsMiningBadRequestError,
    CommunicationsMiningConflictError,
    CommunicationsMiningConnectionError,
    CommunicationsMiningError,
    CommunicationsMiningNotFoundError,
    CommunicationsMiningProtocolError,
    CommunicationsMiningRateLimitError,
    CommunicationsMiningServerError,
)

Params = Mapping[str, Any] | Sequence[tuple[str, Any]] | None
#: Called with the error of each failed attempt of a call, retried or not, as it happens (e.g.
#: :meth:`~airflow_provider_cm.client.concurrency.Slot.observe`, to back off on 429 and 503).
AttemptObserver = Callable[[BaseException], None]

_STATUS_ERRORS: dict[int, type[CommunicationsMiningApiError]] = {
    400: CommunicationsMiningBadRequestError,
    401: CommunicationsMiningAuthError,
    403: CommunicationsMiningAuthError,
    404: CommunicationsMiningNotFoundError,
    409: CommunicationsMiningConflictError,
    413: CommunicationsMiningBadRequestError,
    422: CommunicationsMiningBadRequestError,
    429: CommunicationsMiningRateLimitError,
}
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class ApiCall:
    """One request, ready for either adapter.

    :param method: HTTP method.
    :param url: the full URL.
    :param route: ``"METHOD /path"`` relative to the endpoint, for messages (never the host's credentials).
    :param content: the encoded body, or ``None``.
    :param content_type: the body's media type.
    :param params: query parameters.
    :param idempotent: whether sending it twice has the effect of once (only then is it retried
        after it may have reached the server); for an API route, the route table's rule
        (:func:`airflow_provider_cm.api.routes.may_resend`).
    :param authorised: whether it carries the bearer token (the token request itself does not).
    """

    method: str
    url: str
    route: str
    content: bytes | None = None
    content_type: str = "application/json"
    params: Params = None
    idempotent: bool = False
    authorised: bool = True

    @classmethod
    def to_api(
        cls,
        endpoint: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        raw_body: bytes | None = None,
        params: Params = None,
        idempotent: bool | None = None,
    ) -> ApiCall:
        """A call of the API route ``path`` (after the endpoint, e.g. ``api/v1/sources/p/s``).

        :param idempotent: whether it may be sent again after it may have reached the server;
            ``None`` (the default) takes the route table's rule, which resends no unknown route.

        :raises ValueError: for a body that is not JSON (e.g. a NaN or infinite number).
        """
        content = raw_body if raw_body is not None else None if json_body is None else encode_json(json_body)
        if idempotent is None:
            idempotent = may_resend(method, path)
        return cls(method, f"{endpoint}/{path}", f"{method} /{path}", content, params=params, idempotent=idempotent)

    @classmethod
    def token_request(cls, credentials: ClientCredentials) -> ApiCall:
        """The client-credentials token request (safe to repeat: each answer is a valid token)."""
        return cls(
            "POST",
            credentials.token_url,
            credentials.route,
            credentials.form(),
            content_type="application/x-www-form-urlencoded",
            idempotent=True,
            authorised=False,
        )

    def headers(self, token: str | None) -> dict[str, str]:
        """The call's own headers (the adapters add ``Accept`` and ``User-Agent``)."""
        headers = {"Content-Type": self.content_type} if self.content is not None else {}
        if self.authorised and token:
            headers["Authorization"] = f"Bearer {token}"
        return headers


@dataclass(frozen=True)
class Reply:
    """A successful call's payload and how it was had.

    :param payload: the response's JSON object.
    :param attempts: attempts made, the successful one included.
    :param maybe_committed_earlier: an earlier attempt failed after it may have been carried out
        (see :func:`~airflow_provider_cm.client.retry.may_have_taken_effect`); the payload then
        describes only the last attempt (a ``sync`` counts what the earlier one created as unchanged).
    """

    payload: dict[str, Any]
    attempts: int
    maybe_committed_earlier: bool


def encode_json(value: Any) -> bytes:
    """A request body as compact UTF-8 JSON.

    :raises ValueError: for a value JSON cannot carry (NaN or an infinite number).
    """
    return _JSON.encode(value).encode("utf-8")


def parse_response(status_code: int, headers: Mapping[str, str], content: bytes, route: str) -> dict[str, Any]:
    """Turn an HTTP response into the payload dict, or raise the matching typed error.

    :raises CommunicationsMiningApiError: (a subclass by status) for an error response.
    :raises CommunicationsMiningProtocolError: for a body that is not the documented JSON envelope.
    """
    retry_after = parse_retry_after(headers.get("Retry-After"))
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") not in ("ok", "error"):
        if status_code >= 400:
            snippet = content[:200].decode("utf-8", "replace").strip() or "empty body"
            raise error_class(status_code)(
                status_code, route, f"non-JSON error response: {snippet}", retry_after=retry_after
            )
        raise CommunicationsMiningProtocolError(
            status_code, route, "the response body is not a JSON object with a 'status' field"
        )
    ok = body["status"] == "ok"
    if ok and status_code < 400:
        return body
    if not ok and status_code >= 400:
        message = str(body.get("message") or f"HTTP {status_code}")
        raise error_class(status_code)(status_code, route, message, retry_after=retry_after)
    raise CommunicationsMiningProtocolError(
        status_code, route, f"body status {body['status']!r} disagrees with HTTP {status_code}"
    )


def error_class(status_code: int) -> type[CommunicationsMiningApiError]:
    """The error type of an HTTP error status."""
    if status_code in _STATUS_ERRORS:
        return _STATUS_ERRORS[status_code]
    if status_code >= 500:
        return CommunicationsMiningServerError
    return CommunicationsMiningApiError


_NO_SUCH_HOST = ("Name or service not known", "nodename nor servname", "No address associated", "getaddrinfo failed")
_NOT_TLS = ("WRONG_VERSION_NUMBER", "record layer failure", "unknown protocol", "packet length too long")


def connection_failure(route: str, url: str, exc: BaseException, *, sent: bool) -> CommunicationsMiningConnectionError:
    """Describe a request that got no response, and say whether a retry can help.

    Permanent (not retried, the message says what to change): a host name that does not resolve,
    a TLS certificate that fails verification, and TLS spoken to a plain-HTTP server (the
    endpoint should start with ``http://``). Everything else (refused or reset connections,
    time-outs, a name server that is down) is transient.

    :param sent: whether the request may have reached the server.
    """
    text = f"{exc!r} {exc}"
    host = urlsplit(url).hostname or url
    if any(marker in text for marker in _NO_SUCH_HOST):
        reason = f"the host name {host!r} does not resolve: check the connection's host (the API endpoint)"
        return CommunicationsMiningConnectionError(route, reason, sent=False, permanent=True)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = (
            f"the TLS certificate of {host!r} failed verification ({_ssl_detail(text)}): if the server uses a "
            "private certificate authority, set the connection's CA bundle path (the ca_bundle extra)"
        )
        return CommunicationsMiningConnectionError(route, reason, sent=False, permanent=True)
    if url.startswith("https://") and any(marker in text for marker in _NOT_TLS):
        reason = (
            f"{host!r} does not speak TLS on this port ({_ssl_detail(text)}): "
            f"if it serves plain HTTP, start the endpoint with http:// instead of https://"
        )
        return CommunicationsMiningConnectionError(route, reason, sent=False, permanent=True)
    # The libraries' messages name the URL but never the headers, so no token can leak here.
    return CommunicationsMiningConnectionError(route, f"{type(exc).__name__}: {exc}", sent=sent)


def _ssl_detail(text: str) -> str:
    for marker in ("CERTIFICATE_VERIFY_FAILED", *_NOT_TLS):
        if marker in text:
            return f"SSLError {marker}"
    return "SSLError"


class _AttemptLog:
    """Counts the attempts of one call, remembers whether a failed one may have taken effect, and
    tells the call's observer of each failure."""

    def __init__(self, observer: AttemptObserver | None = None) -> None:
        self.attempts = 0
        self.maybe_committed = False
        self.observer = observer

    def failed(self, error: BaseException) -> BaseException:
        if may_have_taken_effect(error):
            self.maybe_committed = True
        if self.observer is not None:
            self.observer(error)
        return error

    def reply(self, payload: dict[str, Any]) -> Reply:
        return Reply(payload, self.attempts, self.maybe_committed)


class _Pipeline:
    """What both adapters share: settings, the retry arguments and the response handling."""

    def __init__(self, settings: ConnectionSettings, log: Any) -> None:
        self.settings = settings
        self.log = log
        if settings.verify is False:
            log.warning("TLS certificate verification is disabled for connection %r", settings.conn_id)

    def retrying_kwargs(self, call: ApiCall, policy: RetryPolicy | None) -> dict[str, Any]:
        policy = policy or self.settings.retry_policy
        return policy.tenacity_kwargs(idempotent=call.idempotent, route=call.route, log=self.log)

    def token_or_none(self) -> str | None:
        """The API token, or the cached OAuth token if still valid (``None``: fetch one)."""
        credentials = self.settings.credentials
        return self.settings.api_token if credentials is None else credentials.valid_token()

    def handle(
        self, call: ApiCall, token: str | None, status: int, headers: Mapping[str, str], content: bytes
    ) -> dict[str, Any]:
        """Parse an API response; a 401 with client credentials forgets the refused token."""
        try:
            return parse_response(status, headers, content, call.route)
        except CommunicationsMiningAuthError as exc:
            if exc.status_code == 401 and self.settings.credentials is not None:
                self.settings.credentials.invalidate(token)
            raise

    def should_refresh(self, error: CommunicationsMiningAuthError) -> bool:
        """Whether a refused call is worth one more round with a new OAuth token."""
        refresh = error.status_code == 401 and self.settings.credentials is not None
        if refresh:
            self.log.info("%s: the access token was refused; retrying once with a new one", error.route)
        return refresh


class SyncTransport(_Pipeline):
    """The pipeline over one :class:`requests.Session` (thread-safe for concurrent calls).

    :param settings: the resolved connection.
    :param pool_size: HTTP connections kept open for concurrent calls from threads.
    :param log: the logger retries and warnings go to.
    :param mask: called with every OAuth token fetched, to keep it out of logs (the hook passes
        Airflow's secrets masker; without Airflow nothing is masked).
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        pool_size: int = 16,
        log: Any,
        mask: Callable[[str], None] = lambda secret: None,
    ) -> None:
        super().__init__(settings, log)
        self.mask = mask
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(pool_size, 1))
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update(settings.headers)
        # The environment is read once here, not by requests on every request (its proxy and
        # ``.netrc`` look-ups cost about a third of a small request's client CPU).
        session.trust_env = False
        self.session = session
        self.verify = environment_verify(settings.verify)
        self._proxies: dict[str, dict[str, str]] = {}

    def send(
        self,
        call: ApiCall,
        *,
        policy: RetryPolicy | None = None,
        timeouts: tuple[float, float] | None = None,
        observer: AttemptObserver | None = None,
    ) -> Reply:
        """Send ``call`` under the retry policy (one more round with a new OAuth token after a 401).

        :param policy: a policy for this call instead of the connection's.
        :param timeouts: ``(connect, read)`` seconds for this call instead of the connection's.
        :param observer: called with the error of each failed attempt, before any retry.
        :raises CommunicationsMiningError: the typed error of the last attempt.
        """
        log = _AttemptLog(observer)

        def attempt() -> dict[str, Any]:
            log.attempts += 1
            token = self.bearer(policy, timeouts)
            try:
                status, headers, content = self._exchange(call, token, timeouts)
                return self.handle(call, token, status, headers, content)
            except CommunicationsMiningError as exc:
                raise log.failed(exc) from None

        retrying = tenacity.Retrying(**self.retrying_kwargs(call, policy))
        try:
            return log.reply(retrying(attempt))
        except CommunicationsMiningAuthError as exc:
            if not self.should_refresh(exc):
                raise
            return log.reply(retrying(attempt))

    def bearer(self, policy: RetryPolicy | None = None, timeouts: tuple[float, float] | None = None) -> str | None:
        """The bearer token; an OAuth token is fetched (once across threads) when none is cached."""
        token = self.token_or_none()
        credentials = self.settings.credentials
        if token is not None or credentials is None:
            return token
        with credentials.lock:
            token = credentials.valid_token()
            if token is None:
                call = ApiCall.token_request(credentials)

                def attempt() -> str:
                    return credentials.accept(*self._exchange(call, None, timeouts))

                try:
                    token = tenacity.Retrying(**self.retrying_kwargs(call, policy))(attempt)
                except CommunicationsMiningError as exc:
                    raise mark_exhausted(exc) from None
                self.mask(token)
        return token

    def _exchange(
        self, call: ApiCall, token: str | None, timeouts: tuple[float, float] | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        timeout = timeouts or (self.settings.connect_timeout, self.settings.read_timeout)
        # Prepared here and handed to Session.send, not through Session.request: that merges the session's
        # settings, cookies and environment into each request anew (a sixth of a small request's client CPU,
        # which bounds how many label writes a task sends a second). The same headers, cookies and settings.
        headers = CaseInsensitiveDict(self.session.headers)
        headers.update(call.headers(token))
        prepared = requests.PreparedRequest()
        try:
            prepared.prepare(
                method=call.method,
                url=call.url,
                headers=headers,
                data=call.content,
                params=call.params,
                cookies=self.session.cookies,
            )
            response = self.session.send(
                prepared, timeout=timeout, verify=self.verify, proxies=self.proxies_for(call.url), stream=False
            )
        except requests.exceptions.RequestException as exc:
            raise connection_failure(call.route, call.url, exc, sent=_requests_sent(exc)) from None
        return response.status_code, response.headers, response.content

    def proxies_for(self, url: str) -> dict[str, str]:
        """The proxies for ``url``: the environment's (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``),
        overridden scheme by scheme by the connection's ``proxies``; looked up once per origin."""
        scheme, netloc = urlsplit(url)[:2]
        origin = f"{scheme}://{netloc}"
        found = self._proxies.get(origin)
        if found is None:
            found = {**requests.utils.get_environ_proxies(url), **self.settings.proxies}
            self._proxies[origin] = found
        return found

    def close(self) -> None:
        """Close the session's connections."""
        self.session.close()


class AsyncTransport(_Pipeline):
    """The pipeline over one :class:`httpx.AsyncClient`, for the triggerer's event loop.

    Keep one for a trigger's whole run and close it with :meth:`aclose`.

    :param settings: the resolved connection.
    :param log: the logger retries and warnings go to.
    :param amask: awaited with every OAuth token fetched, to keep it out of logs (the hook passes
        Airflow's asynchronous secrets masker; without Airflow nothing is masked).
    """

    def __init__(
        self, settings: ConnectionSettings, *, log: Any, amask: Callable[[str], Awaitable[None]] | None = None
    ) -> None:
        import httpx

        super().__init__(settings, log)
        self.amask = amask
        verify = httpx_verify(settings.verify)
        mounts = {
            proxy_pattern(key): httpx.AsyncHTTPTransport(proxy=url, verify=verify)
            for key, url in settings.proxies.items()
        }
        self.client = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            headers=dict(settings.headers),
            mounts=mounts or None,
        )

    async def send(
        self,
        call: ApiCall,
        *,
        policy: RetryPolicy | None = None,
        timeouts: tuple[float, float] | None = None,
        observer: AttemptObserver | None = None,
    ) -> Reply:
        """:meth:`SyncTransport.send` on the event loop."""
        log = _AttemptLog(observer)

        async def attempt() -> dict[str, Any]:
            log.attempts += 1
            token = await self.bearer(policy, timeouts)
            try:
                status, headers, content = await self._exchange(call, token, timeouts)
                return self.handle(call, token, status, headers, content)
            except CommunicationsMiningError as exc:
                raise log.failed(exc) from None

        retrying = tenacity.AsyncRetrying(**self.retrying_kwargs(call, policy))
        try:
            return log.reply(await retrying(attempt))
        except CommunicationsMiningAuthError as exc:
            if not self.should_refresh(exc):
                raise
            return log.reply(await retrying(attempt))

    async def bearer(
        self, policy: RetryPolicy | None = None, timeouts: tuple[float, float] | None = None
    ) -> str | None:
        """:meth:`SyncTransport.bearer` on the event loop (masked with the async masker)."""
        token = self.token_or_none()
        credentials = self.settings.credentials
        if token is not None or credentials is None:
            return token
        async with credentials.async_lock:
            token = credentials.valid_token()
            if token is None:
                call = ApiCall.token_request(credentials)

                async def attempt() -> str:
                    return credentials.accept(*await self._exchange(call, None, timeouts))

                try:
                    fetched: str = await tenacity.AsyncRetrying(**self.retrying_kwargs(call, policy))(attempt)
                except CommunicationsMiningError as exc:
                    raise mark_exhausted(exc) from None
                if self.amask is not None:
                    await self.amask(fetched)
                token = fetched
        return token

    async def _exchange(
        self, call: ApiCall, token: str | None, timeouts: tuple[float, float] | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        import httpx

        timeout = httpx.Timeout(timeouts[1], connect=timeouts[0]) if timeouts else httpx.USE_CLIENT_DEFAULT
        try:
            response = await self.client.request(
                call.method,
                call.url,
                content=call.content,
                params=call.params,  # type: ignore[arg-type]  # the same pairs requests takes
                headers=call.headers(token),
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError))
            raise connection_failure(call.route, call.url, exc, sent=sent) from None
        return response.status_code, response.headers, response.content

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()


def environment_verify(verify: bool | str) -> bool | str:
    """The connection's ``verify``, or, where it says only "verify", the CA bundle the environment
    names (``REQUESTS_CA_BUNDLE``, then ``CURL_CA_BUNDLE``), as requests itself would choose."""
    if verify is True:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return verify


def httpx_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """The normalised ``verify`` setting as httpx takes it (a CA bundle path becomes an SSL context)."""
    if isinstance(verify, bool):
        return verify
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


def proxy_pattern(key: str) -> str:
    """A requests proxy-map key (``https``, ``all``, ``https://host``) as an httpx mount pattern."""
    return key if "://" in key else f"{key}://"


def _requests_sent(exc: requests.exceptions.RequestException) -> bool:
    """Whether a requests failure may have happened after the request reached the server."""
    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.ProxyError)):
        return False
    if isinstance(exc, requests.exceptions.SSLError):
        return False  # the handshake comes before the request
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        return not ("NewConnectionError" in text or "Connection refused" in text or "resolve" in text)
    return True
