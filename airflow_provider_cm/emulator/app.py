"""The emulator's HTTP application: the resource routers and the layers in front of them.

Every response is the API's envelope: ``{"status": "ok", ...}`` with a 2xx code or
``{"status": "error", "message": "..."}`` with a 4xx/5xx code, never a bare error page. The
routes work under any path prefix (``/org/tenant/reinfer_/api/...`` as well as ``/api/...``).
Requests pass, outermost first: raw-path routing, the token check, fault injection, the
catch-all error envelope, then the routes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.emulator.errors import ApiError
from airflow_provider_cm.emulator.fault_injection.layer import FaultInjection
from airflow_provider_cm.emulator.middleware import ErrorEnvelope, RawPathRouting, TokenCheck, internal_error
from airflow_provider_cm.emulator.openapi import doc, install
from airflow_provider_cm.emulator.routes import (
    admin,
    comments,
    datasets,
    export,
    labelling_reads,
    labellings,
    model_versions,
    oauth,
    predictions,
    projects,
    raw_emails,
    sources,
    stream_batches,
    streams,
)
from airflow_provider_cm.emulator.schemas import USER, envelope
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import error, ok

log = logging.getLogger(__name__)

_RESOURCES = (
    projects,
    sources,
    comments,
    raw_emails,
    datasets,
    labellings,
    labelling_reads,
    export,
    streams,
    stream_batches,
    model_versions,
)


def _current_user() -> Response:
    return ok(
        user={
            "id": "0000000000000001",
            "username": "emulator",
            "email": "emulator@example.com",
            "created": "2026-01-01T00:00:00.000000Z",
            "global_permissions": [],
            "organisation_permissions": {},
            "sso_global_permissions": [],
            "verified": True,
        }
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> Response:
        return error(exc.status_code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error(404, "404 Not Found")
        return error(exc.status_code, f"{exc.status_code} {exc.detail}")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> Response:
        return internal_error()


def create_app(token: str, store: Store | None = None) -> Any:
    """Build the emulator's ASGI application.

    :param token: the only API token accepted (``Authorization: Bearer <token>``), besides the
        OAuth tokens the emulator's identity server issues.
    :param store: the data store; a new, in-memory one if not given.
    """
    store = store or Store()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    app = FastAPI(title="Communications Mining emulator", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.emulator = store
    _install_error_handlers(app)
    app.add_api_route(api.CURRENT_USER.url, _current_user, methods=["GET"], **doc(envelope(user=USER)))
    for resource in _RESOURCES:
        app.include_router(resource.router(store))
    app.include_router(predictions.router(store))
    app.include_router(oauth.router(store.knobs.oauth))
    app.include_router(admin.router(store))
    install(app)
    return RawPathRouting(TokenCheck(FaultInjection(ErrorEnvelope(app), store.knobs), token, store.knobs))
