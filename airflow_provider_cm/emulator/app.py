"""The emulator's HTTP application: the documented Communications Mining routes on FastAPI.

Every response is the API's envelope: ``{"status": "ok", ...}`` with a 2xx code or
``{"status": "error", "message": "..."}`` with a 4xx/5xx code. The routes work under any path
prefix (``/org/tenant/reinfer_/api/...`` as well as ``/api/...``).

Emulator-only routes live under ``/_emulator/`` and are not part of the real API:

* ``GET /_emulator/stats``: billed comments (in all and per source id), stored comments,
  requests per route.
* ``POST /<organisation>/identity_/connect/token``: the client-credentials grant of Automation
  Cloud external applications; ``POST /_emulator/oauth`` ``{"clients": {"<id>": "<secret>"},
  "token_lifetime": 3, "revoke": true, "list_tokens": true}`` registers clients, sets the
  lifetime of the tokens it issues (seconds), revokes those issued so far, and lists them (for
  tests that check no token leaks).
* ``POST /_emulator/reset``: forget everything.
* ``POST /_emulator/datasets/<p>/<d>/models`` ``{"tag": "live"}``: train a classifier on the
  dataset's assigned labels, pin it as the next model version and (optionally) tag it;
  ``PUT /_emulator/datasets/<p>/<d>/model-tags/<tag>`` ``{"version": N}`` moves a tag.
* ``POST /_emulator/faults`` with ``{"reject_comment_ids": {"<comment id>": "<reason>"}}``
  makes ``sync`` refuse (HTTP 400) any request holding one of these ids, with that reason;
  ``{"faults": [rule, ...]}`` adds fault rules (see :mod:`airflow_provider_cm.emulator.faults`:
  error statuses with ``Retry-After``, dropped connections, truncated bodies, hangs, latency;
  for the next N calls, every k-th call or a seeded random rate); ``{"fail_next": {"count": N,
  "status": 503, ...}}`` is shorthand for a status rule; ``{"rate_limit": {"requests_per_second":
  20, "burst": 5}}`` throttles with 429 and ``Retry-After``; ``{"latency": 0.05}`` delays every
  API response. ``DELETE /_emulator/faults`` clears every rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_cm.emulator import predictions, streams
from airflow_provider_cm.emulator.faults import FaultError, FaultInjection, FaultRule, TokenBucket
from airflow_provider_cm.emulator.state import (
    ApiError,
    EmulatorState,
    bad_request,
    format_time,
    not_found,
    now_utc,
)

log = logging.getLogger(__name__)

_ROUTE_ROOTS = ("/api/", "/auth/", "/_emulator/")
TOKEN_PATH = "/identity_/connect/token"


def json_response(payload: dict[str, Any], status_code: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(body, status_code=status_code, media_type="application/json")


def ok(**payload: Any) -> Response:
    return json_response({"status": "ok", **payload})


def error(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = json_response({"status": "error", "message": message}, status_code)
    if headers:
        response.headers.update(headers)
    return response


class PrefixStripper:
    """ASGI middleware: drop any path prefix before ``/api/``, ``/auth/`` or ``/_emulator/``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if not path.startswith(_ROUTE_ROOTS):
                positions = [p for p in (path.find(root) for root in _ROUTE_ROOTS) if p > 0]
                if positions:
                    cut = min(positions)
                    scope = dict(scope)
                    scope["path"] = path[cut:]
                    scope["raw_path"] = path[cut:].encode()
        await self.app(scope, receive, send)


class TokenCheck:
    """ASGI middleware: answer 401 unless ``Authorization: Bearer <token>``; count requests per route."""

    def __init__(self, app: Any, token: str, state: EmulatorState) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].endswith(TOKEN_PATH):
            await self.app(scope, receive, send)  # the identity server's token endpoint takes no bearer token
            return
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if authorization != self.expected and not self.state.oauth.accepts(authorization):
            await error(401, "401 Unauthorized: missing or invalid API token")(scope, receive, send)
            return
        if self.state.latency and not scope["path"].startswith("/_emulator/"):
            await asyncio.sleep(self.state.latency)
        await self.app(scope, receive, send)
        route = scope.get("route")
        key = f"{scope['method']} {getattr(route, 'path', 'unknown')}"
        counts = self.state.requests_by_route
        counts[key] = counts.get(key, 0) + 1


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise bad_request("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def create_app(token: str, state: EmulatorState | None = None, *, save_interval: float = 1.0) -> Any:
    """Build the emulator's ASGI application.

    :param token: the only API token accepted (``Authorization: Bearer <token>``).
    :param state: the data store; a new empty one if not given.
    :param save_interval: seconds between saves of a dirty state to its ``state_path``.
    """
    state = state or EmulatorState()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        saver = asyncio.create_task(_save_periodically(state, save_interval)) if state.state_path else None
        try:
            yield
        finally:
            if saver:
                saver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await saver
            if state.state_path:
                state.save()

    app = FastAPI(title="Communications Mining emulator", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.emulator = state

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> Response:
        return error(exc.status_code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error(404, "404 Not Found")
        return error(exc.status_code, f"{exc.status_code} {exc.detail}")

    # -- auth and projects ------------------------------------------------------------------------

    @app.get("/auth/user")
    async def current_user() -> Response:
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

    @app.get("/api/_private/projects")
    async def list_projects() -> Response:
        return ok(projects=list(state.projects.values()))

    @app.get("/api/_private/projects/{project}")
    async def get_project(project: str) -> Response:
        if project not in state.projects:
            raise not_found()
        return ok(project=state.projects[project])

    @app.put("/api/_private/projects/{project}")
    async def put_project(project: str, request: Request) -> Response:
        return ok(project=state.create_project(project, await _json_body(request)))

    # -- sources ----------------------------------------------------------------------------------

    @app.get("/api/v1/sources")
    async def list_sources() -> Response:
        return ok(sources=[s.to_api() for s in state.sources.values()])

    @app.get("/api/v1/sources/{project}")
    async def list_project_sources(project: str) -> Response:
        if project.startswith("id:"):
            return ok(source=state.source_by_ref(project).to_api())
        return ok(sources=[s.to_api() for s in state.sources.values() if s.project == project])

    @app.get("/api/v1/sources/{project}/{name}")
    async def get_source(project: str, name: str) -> Response:
        return ok(source=state.source_by_ref(project, name).to_api())

    @app.put("/api/v1/sources/{project}/{name}")
    async def put_source(project: str, name: str, request: Request) -> Response:
        return ok(source=state.create_source(project, name, await _json_body(request)).to_api())

    @app.post("/api/v1/sources/{project}/{name}")
    async def post_source(project: str, name: str, request: Request) -> Response:
        source = state.source_by_ref(project, name)
        return ok(source=state.update_source(source, await _json_body(request)).to_api())

    @app.post("/api/v1/sources/{project}/{name}/sync")
    async def sync(project: str, name: str, request: Request) -> Response:
        source = state.source_by_ref(project, name)
        body = await _json_body(request)
        with state.lock:
            counts = state.sync(source, body)
        return ok(**counts)

    @app.put("/api/_private/sources/{project}/{name}/comments")
    async def put_comments(project: str, name: str, request: Request) -> Response:
        source = state.source_by_ref(project, name)
        body = await _json_body(request)
        with state.lock:
            state.put_comments(source, body)
        return ok()

    @app.get("/api/v1/sources/{project}/{name}/comments/{comment_id}")
    async def get_comment(project: str, name: str, comment_id: str) -> Response:
        source = state.source_by_ref(project, name)
        comment = source.comments.get(comment_id)
        if comment is None:
            raise not_found()
        return ok(comment=state.public_comment(comment))

    # -- datasets ---------------------------------------------------------------------------------

    @app.get("/api/v1/datasets")
    async def list_datasets() -> Response:
        return ok(datasets=[d.to_api() for d in state.datasets.values()])

    @app.get("/api/v1/datasets/{project}")
    async def list_project_datasets(project: str) -> Response:
        if project.startswith("id:"):
            return ok(dataset=state.dataset_by_ref(project).to_api())
        return ok(datasets=[d.to_api() for d in state.datasets.values() if d.project == project])

    @app.get("/api/v1/datasets/{project}/{name}")
    async def get_dataset(project: str, name: str) -> Response:
        return ok(dataset=state.dataset_by_ref(project, name).to_api())

    @app.put("/api/v1/datasets/{project}/{name}")
    async def put_dataset(project: str, name: str, request: Request) -> Response:
        return ok(dataset=state.create_dataset(project, name, await _json_body(request)).to_api())

    @app.post("/api/v1/datasets/{project}/{name}")
    async def post_dataset(project: str, name: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        return ok(dataset=state.update_dataset(dataset, await _json_body(request)).to_api())

    @app.delete("/api/v1/datasets/{project}/{name}")
    async def delete_dataset(project: str, name: str) -> Response:
        state.delete_dataset(state.dataset_by_ref(project, name))
        return ok()

    @app.post("/api/_private/datasets/{project}/{name}/labellings/{uid}")
    async def update_labelling(project: str, name: str, uid: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        body = await _json_body(request)
        with state.lock:
            annotated = state.update_annotations(dataset, uid, body)
        return ok(**annotated)

    @app.get("/api/_private/datasets/{project}/{name}/labellings")
    async def get_labellings(project: str, name: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        uids = request.query_params.getlist("id")
        return ok(results=state.get_annotations(dataset, uids))

    @app.post("/api/v1/datasets/{project}/{name}/export")
    async def export(project: str, name: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        body = await _json_body(request)
        with state.lock:
            page = state.export(dataset, body)
        return ok(**page)

    # -- streams ----------------------------------------------------------------------------------

    streams_path = "/api/v1/datasets/{project}/{name}/streams"

    @app.put(streams_path)
    async def put_stream(project: str, name: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        return ok(stream=streams.put_stream(state, dataset, await _json_body(request)))

    @app.get(streams_path)
    async def list_streams(project: str, name: str) -> Response:
        dataset = state.dataset_by_ref(project, name)
        return ok(streams=[streams.to_api(s) for s in dataset.streams.values()])

    @app.get(streams_path + "/{stream}")
    async def get_stream(project: str, name: str, stream: str) -> Response:
        return ok(stream=streams.get_stream(state.dataset_by_ref(project, name), stream))

    @app.delete(streams_path + "/{stream}")
    async def delete_stream(project: str, name: str, stream: str) -> Response:
        streams.delete_stream(state, state.dataset_by_ref(project, name), stream)
        return ok()

    @app.post(streams_path + "/{stream}/fetch")
    async def fetch_stream(project: str, name: str, stream: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        body = await _json_body(request)
        with state.lock:
            return ok(**streams.fetch(state, dataset, stream, body))

    @app.get(streams_path + "/{stream}/results")
    @app.get("/api/preview/datasets/{project}/{name}/streams/{stream}/results")
    async def stream_results(project: str, name: str, stream: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        query = request.query_params
        try:
            max_results = int(query.get("max_results", "16"))
            max_filtered = int(query["max_filtered"]) if "max_filtered" in query else None
        except ValueError:
            raise bad_request("max_results and max_filtered must be integers") from None
        with state.lock:
            return ok(**streams.results(state, dataset, stream, max_results, max_filtered))

    @app.post(streams_path + "/{stream}/advance")
    async def advance_stream(project: str, name: str, stream: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        streams.advance(state, dataset, stream, await _json_body(request))
        return ok()

    @app.post(streams_path + "/{stream}/reset")
    async def reset_stream(project: str, name: str, stream: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        return ok(**streams.reset(state, dataset, stream, await _json_body(request)))

    @app.put(streams_path + "/{stream}/exceptions")
    async def tag_exceptions(project: str, name: str, stream: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        streams.tag_exceptions(state, dataset, stream, await _json_body(request))
        return ok()

    @app.delete(streams_path + "/{stream}/exceptions")
    async def untag_exceptions(project: str, name: str, stream: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        streams.untag_exceptions(state, dataset, stream, request.query_params.getlist("uid"))
        return ok()

    # -- models and predictions -------------------------------------------------------------------

    @app.get("/api/v1/datasets/{project}/{name}/model-tags")
    async def get_model_tags(project: str, name: str) -> Response:
        return ok(model_tags=predictions.model_tags(state.dataset_by_ref(project, name)))

    @app.post("/api/v1/datasets/{project}/{name}/labellers/{version}/predict")
    async def predict(project: str, name: str, version: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        body = await _json_body(request)
        with state.lock:
            return ok(**predictions.predict(state, dataset, version, body))

    @app.post("/api/_private/datasets/{project}/{name}/labellers")
    async def list_labellers(project: str, name: str) -> Response:
        dataset = state.dataset_by_ref(project, name)
        return ok(
            labellers=[{"version": m["version"], "trained_time": m["trained_time"]} for m in dataset.models.values()]
        )

    # -- emulator-only ----------------------------------------------------------------------------

    @app.post("/_emulator/datasets/{project}/{name}/models")
    async def pin_model(project: str, name: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        body = await _json_body(request)
        with state.lock:
            return ok(**predictions.train_version(state, dataset, body.get("tag")))

    @app.put("/_emulator/datasets/{project}/{name}/model-tags/{tag}")
    async def move_tag(project: str, name: str, tag: str, request: Request) -> Response:
        dataset = state.dataset_by_ref(project, name)
        version = (await _json_body(request)).get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise bad_request("version must be an integer")
        predictions.set_tag(dataset, tag, version)
        state._mutated()
        return ok(model_tags=predictions.model_tags(dataset))

    @app.post("/{organisation}" + TOKEN_PATH)
    async def issue_token(organisation: str, request: Request) -> Response:
        """Automation Cloud's client-credentials grant (form-encoded), answered in OAuth's own shape."""
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        status, payload = state.oauth.issue(form)
        return json_response(payload, status)

    @app.post("/_emulator/oauth")
    async def configure_oauth(request: Request) -> Response:
        body = await _json_body(request)
        clients = body.get("clients", {})
        if not isinstance(clients, dict):
            raise bad_request("clients must map client ids to secrets")
        state.oauth.clients.update({str(k): str(v) for k, v in clients.items()})
        if body.get("token_lifetime") is not None:
            state.oauth.lifetime = float(body["token_lifetime"])
        if body.get("revoke"):
            state.oauth.issued.clear()
        tokens = [key.decode()[len("Bearer ") :] for key in state.oauth.issued] if body.get("list_tokens") else []
        return ok(issued=state.oauth.requests, tokens=tokens)

    @app.get("/_emulator/stats")
    async def stats() -> Response:
        return ok(stats=state.stats(), time=format_time(now_utc()))

    @app.post("/_emulator/reset")
    async def reset() -> Response:
        with state.lock:
            fresh = EmulatorState()
            for attr in (
                "projects",
                "sources",
                "datasets",
                "billed_comments",
                "billed_predictions",
                "billed_by_source",
            ):
                setattr(state, attr, getattr(fresh, attr))
            state.requests_by_route.clear()
            state.reject_comment_ids.clear()
            state._mutated()
        return ok()

    @app.post("/_emulator/faults")
    async def set_faults(request: Request) -> Response:
        body = await _json_body(request)
        rejects = body.get("reject_comment_ids", {})
        if not isinstance(rejects, dict):
            raise bad_request("reject_comment_ids must map comment ids to reasons")
        state.reject_comment_ids.update({str(k): str(v) for k, v in rejects.items()})
        if "latency" in body:
            latency = body["latency"]
            if isinstance(latency, bool) or not isinstance(latency, (int, float)) or latency < 0:
                raise bad_request("latency must be a number of seconds, 0 or more")
            state.latency = float(latency)
        rules = list(body.get("faults", []))
        if body.get("fail_next") is not None:  # shorthand: {"count": N, "status": S, ...}
            rules.append({"kind": "status", **body["fail_next"]})
        try:
            state.fault_rules.extend(FaultRule.parse(rule) for rule in rules)
            if body.get("rate_limit") is not None:
                state.rate_limit = TokenBucket(**body["rate_limit"]) if body["rate_limit"] else None
        except (FaultError, TypeError) as exc:
            raise bad_request(f"bad fault rule: {exc}") from None
        return ok()

    @app.delete("/_emulator/faults")
    async def clear_faults() -> Response:
        state.reject_comment_ids.clear()
        state.fault_rules.clear()
        state.rate_limit = None
        state.latency = 0.0
        return ok()

    return PrefixStripper(TokenCheck(FaultInjection(app, state), token, state))


async def _save_periodically(state: EmulatorState, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        if state.dirty:
            try:
                state.save()
            except OSError:
                log.exception("could not save the emulator state to %s", state.state_path)
