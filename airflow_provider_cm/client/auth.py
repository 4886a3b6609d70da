"""OAuth client credentials of an Automation Cloud external application
(``POST https://cloud.uipath.com/<organisation>/identity_/connect/token``).

:class:`ClientCredentials` holds the cached token and the rules for the token request and its
answer; the request itself is sent by the hook's transport (synchronous or asynchronous), under
the same retry policy as every API request. One object is shared by both transports of a hook,
so a token fetched by either serves both until shortly before it expires.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from airflow_provider_cm.client.retry import parse_retry_after
from airflow_provider_cm.exceptions import (
    CommunicationsMiningApiError,
    CommunicationsMiningAuthError,
    CommunicationsMiningProtocolError,
    CommunicationsMiningRateLimitError,
    CommunicationsMiningServerError,
)

#: Seconds before ``expires_in`` runs out at which a cached token is replaced.
REFRESH_MARGIN = 30.0


def default_token_url(endpoint: str) -> str:
    """The Automation Cloud token URL of an endpoint ``https://<host>/<organisation>/<tenant>/reinfer_``.

    :raises ValueError: if the endpoint has no organisation in its path (legacy tenants: set ``token_url``).
    """
    parts = urlsplit(endpoint)
    segments = [segment for segment in parts.path.split("/") if segment]
    if not segments:
        raise ValueError(
            f"cannot derive the token URL from endpoint {endpoint!r}: set token_url in the connection extras"
        )
    return urlunsplit((parts.scheme, parts.netloc, f"/{segments[0]}/identity_/connect/token", "", ""))


class ClientCredentials:
    """A client-credentials grant and its cached access token.

    :param token_url: the identity server's token endpoint.
    :param client_id: the external application's id.
    :param client_secret: its secret (never logged or put in an error).
    :param scope: space-separated scopes, or ``None`` for the application's defaults.
    """

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str | None = None) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self._token: str | None = None
        self._expires_at = 0.0
        #: Held by the synchronous transport while it fetches, so threads fetch one token, not one each.
        self.lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None

    @property
    def async_lock(self) -> asyncio.Lock:
        """The asynchronous transport's counterpart of :attr:`lock` (made in the running event loop)."""
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        return self._async_lock

    @property
    def route(self) -> str:
        """``"POST /<organisation>/identity_/connect/token"``, for messages."""
        return f"POST {urlsplit(self.token_url).path}"

    def form(self) -> bytes:
        """The token request's ``application/x-www-form-urlencoded`` body."""
        body = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret}
        if self.scope:
            body["scope"] = self.scope
        return urlencode(body).encode("ascii")

    def accept(self, status_code: int, headers: Mapping[str, str], content: bytes) -> str:
        """Take the identity server's answer; cache and return the access token.

        :raises CommunicationsMiningRateLimitError: for HTTP 429 (retried by the policy).
        :raises CommunicationsMiningServerError: for HTTP 5xx (retried by the policy).
        :raises CommunicationsMiningProtocolError: for a success without a readable token (retried).
        :raises CommunicationsMiningAuthError: when the server refuses the client (wrong id or secret,
            scope not granted): a retry cannot help.
        """
        try:
            payload = json.loads(content) if content else None
        except ValueError:
            payload = None
        if status_code < 400:
            if isinstance(payload, dict) and payload.get("access_token"):
                return self._cache(payload)
            raise CommunicationsMiningProtocolError(status_code, self.route, "the token response holds no access_token")
        retry_after = parse_retry_after(headers.get("Retry-After"))
        reason = (payload.get("error_description") or payload.get("error")) if isinstance(payload, dict) else None
        if status_code == 429:
            message = "the identity server is rate limiting token requests"
            raise CommunicationsMiningRateLimitError(status_code, self.route, message, retry_after=retry_after)
        if status_code >= 500:
            message = f"the identity server failed: {reason or f'HTTP {status_code}'}"
            raise CommunicationsMiningServerError(status_code, self.route, message, retry_after=retry_after)
        if status_code in (400, 401, 403):
            message = f"the identity server refused client {self.client_id!r}: {reason or 'no reason given'}"
            raise CommunicationsMiningAuthError(status_code, self.route, message)
        raise CommunicationsMiningApiError(status_code, self.route, f"token request failed: {reason or 'no reason'}")

    def _cache(self, payload: Mapping[str, Any]) -> str:
        lifetime = float(payload.get("expires_in") or 3600)
        self._token = str(payload["access_token"])
        self._expires_at = time.monotonic() + max(lifetime - min(REFRESH_MARGIN, lifetime / 2), 0.0)
        return self._token

    def valid_token(self) -> str | None:
        """The cached token if it is not about to expire."""
        if self._token and time.monotonic() < self._expires_at:
            return self._token
        return None

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (only if it is still ``token``, when given)."""
        if token is None or token == self._token:
            self._token = None
            self._expires_at = 0.0
