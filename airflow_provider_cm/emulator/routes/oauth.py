"""Automation Cloud's identity server: the client-credentials grant of external applications.

``POST /<organisation>/identity_/connect/token`` (form-encoded) answers in OAuth's own shape, not
the API's envelope. Tokens are short-lived when tests ask for it, so that expiry happens mid-run.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.emulator.openapi import JSON, error_responses
from airflow_provider_cm.emulator.schemas import OAUTH_ERROR, OAUTH_TOKEN, STRING
from airflow_provider_cm.emulator.wire import json_response

TOKEN_PATH = "/identity_/connect/token"
TOKEN_FORM = {
    "type": "object",
    "properties": {name: STRING for name in ("grant_type", "client_id", "client_secret", "scope")},
}
TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    **error_responses((404,)),
    200: {"description": "A token", "content": {JSON: {"schema": OAUTH_TOKEN}}},
    400: {"description": "Not the client-credentials grant", "content": {JSON: {"schema": OAUTH_ERROR}}},
    401: {"description": "Unknown client or wrong secret", "content": {JSON: {"schema": OAUTH_ERROR}}},
}
TOKEN_OPENAPI = {
    "security": [],
    "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": TOKEN_FORM}}},
}


class OAuthServer:
    """The clients the identity server knows and the tokens it issued."""

    def __init__(self) -> None:
        self.clients: dict[str, str] = {}
        self.lifetime = 3600.0
        self.issued: dict[bytes, float] = {}  # b"Bearer <token>" -> monotonic expiry
        self.requests = 0

    def issue(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer a token request: ``(status, OAuth JSON)``."""
        self.requests += 1
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not client_id or self.clients.get(client_id) != secret:
            return 401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
        token = "cm-oauth-" + secrets.token_urlsafe(24)
        self.issued[f"Bearer {token}".encode()] = time.monotonic() + self.lifetime
        payload: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}
        if form.get("scope"):
            payload["scope"] = form["scope"]
        return 200, payload

    def accepts(self, authorization: bytes | None) -> bool:
        """Whether an ``Authorization`` header holds a token issued here that has not expired."""
        expiry = self.issued.get(authorization or b"")
        return expiry is not None and time.monotonic() < expiry


def router(oauth: OAuthServer) -> APIRouter:
    """The identity server's token route."""
    routes = APIRouter()

    @routes.post("/{organisation}" + TOKEN_PATH, responses=TOKEN_RESPONSES, openapi_extra=TOKEN_OPENAPI)
    async def issue_token(organisation: str, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        status, payload = oauth.issue(form)
        return json_response(payload, status)

    return routes
