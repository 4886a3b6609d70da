"""Bearer tokens for the hook: a static API token, or OAuth client credentials of an Automation Cloud
external application (``POST https://cloud.uipath.com/<organisation>/identity_/connect/token``).

Client-credentials tokens are cached until shortly before ``expires_in`` runs out, refreshed when
the API answers 401, and masked in logs as soon as they are obtained.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_cm.exceptions import CommunicationsMiningAuthError

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
    """A cached client-credentials token.

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
        self._lock = threading.Lock()
        self.fetched = 0

    @property
    def route(self) -> str:
        return f"POST {urlsplit(self.token_url).path}"

    def form(self) -> dict[str, str]:
        """The token request's form body."""
        body = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret}
        if self.scope:
            body["scope"] = self.scope
        return body

    def accept(self, response: Any) -> str:
        """Take a token response (``requests`` or ``httpx``); return the access token.

        :raises CommunicationsMiningAuthError: for a refusal or a response without a token.
        """
        status_code = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if status_code >= 400 or not isinstance(payload, dict) or not payload.get("access_token"):
            reason = payload.get("error_description") or payload.get("error") if isinstance(payload, dict) else None
            raise CommunicationsMiningAuthError(
                status_code if status_code >= 400 else 401,
                self.route,
                f"the identity server refused client {self.client_id!r}: {reason or 'no access_token in response'}",
            )
        lifetime = float(payload.get("expires_in") or 3600)
        self._token = str(payload["access_token"])
        self._expires_at = time.monotonic() + max(lifetime - min(REFRESH_MARGIN, lifetime / 2), 0.0)
        self.fetched += 1
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

    def token(self, session: Any, timeout: Any, verify: Any = True) -> str:
        """A valid token, fetched with the requests ``session`` when none is cached."""
        with self._lock:
            cached = self.valid_token()
            if cached:
                return cached
            import requests

            try:
                response = session.post(self.token_url, data=self.form(), timeout=timeout, verify=verify)
            except requests.exceptions.RequestException as exc:
                raise CommunicationsMiningAuthError(
                    401, self.route, f"token request failed: {type(exc).__name__}"
                ) from None
            token = self.accept(response)
        from airflow.sdk.log import mask_secret

        mask_secret(token)
        return token

    async def atoken(self, client: Any) -> str:
        """:meth:`token` on an :class:`httpx.AsyncClient`, masking with the async masker."""
        cached = self.valid_token()
        if cached:
            return cached
        import httpx

        try:
            response = await client.post(self.token_url, data=self.form())
        except httpx.HTTPError as exc:
            raise CommunicationsMiningAuthError(
                401, self.route, f"token request failed: {type(exc).__name__}"
            ) from None
        token = self.accept(response)
        from airflow.sdk.log import amask_secret

        await amask_secret(token)
        return token
