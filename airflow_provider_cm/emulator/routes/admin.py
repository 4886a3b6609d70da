"""Emulator-only routes under ``/_emulator/``, not part of the real API.

* ``GET /_emulator/stats``: billed comments (in all and per source id) and predictions, stored
  comments, requests per route, OAuth token requests, faults injected, requests throttled.
* ``POST /_emulator/reset``: forget every object and counter.
* ``POST /_emulator/oauth`` ``{"clients": {"<id>": "<secret>"}, "token_lifetime": 3, "revoke":
  true, "list_tokens": true}``: register clients, set the lifetime of the tokens issued (seconds),
  revoke those issued so far, list them (for tests that check no token leaks).
* ``POST /_emulator/datasets/<p>/<d>/models`` ``{"tag": "live"}``: train a classifier on the
  dataset's assigned labels, pin it as the next model version and (optionally) tag it;
  ``PUT /_emulator/datasets/<p>/<d>/model-tags/<tag>`` ``{"version": N}`` moves a tag.
* ``POST /_emulator/datasets/<p>/<d>/activity`` ``{"day": "2026-10-05", "seed": 7, ...}``: replay
  a day of activity (new comments, late uploads, relabels, deletions, a retrain) on the dataset,
  deterministic from the seed (:mod:`airflow_provider_cm.emulator.activity`); answers the uids changed.
* ``POST /_emulator/faults``: ``{"reject_comment_ids": {"<comment id>": "<reason>"}}`` makes
  ``sync`` refuse (400) any request holding one of these ids; ``{"faults": [rule, ...]}`` adds
  fault rules (:mod:`airflow_provider_cm.emulator.fault_injection.rules`); ``{"fail_next": {"count": N,
  "status": 503, ...}}`` is shorthand for a status rule; ``{"rate_limit": {"requests_per_second":
  20, "burst": 5}}`` throttles with 429 and ``Retry-After`` (``{}`` lifts it); ``{"latency":
  0.05}`` delays every API response. Anything unknown or malformed is refused with 400 naming
  the field, and nothing of that request is applied. ``DELETE /_emulator/faults`` clears all.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api.times import api_time, now_utc
from airflow_provider_cm.emulator.activity import DayOfActivity, replay_day
from airflow_provider_cm.emulator.errors import bad_request
from airflow_provider_cm.emulator.fault_injection.rules import FaultError, FaultRule, TokenBucket
from airflow_provider_cm.emulator.routes.model_versions import model_tags, set_tag, train_version
from airflow_provider_cm.emulator.rules.checks import anything, boolean, mapping, number, obj, string
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import json_body, ok

FAULTS_BODY = obj(
    {
        "reject_comment_ids": mapping(string()),
        "latency": number(minimum=0, maximum=3600),
        "faults": anything(),
        "fail_next": anything(),
        "rate_limit": anything(),
    },
    closed=True,
)
OAUTH_BODY = obj(
    {
        "clients": mapping(string()),
        "token_lifetime": number(minimum=0),
        "revoke": boolean(),
        "list_tokens": boolean(),
    },
    closed=True,
)


def _fault_rules(body: dict[str, Any]) -> list[FaultRule]:
    rules = body.get("faults")
    if rules is not None and not isinstance(rules, list):
        raise bad_request("faults must be a list of fault rules")
    parsed = [FaultRule.parse(rule, f"faults[{i}]") for i, rule in enumerate(rules or [])]
    if body.get("fail_next") is not None:
        shorthand = body["fail_next"]
        if not isinstance(shorthand, dict):
            raise bad_request("fail_next must be an object")
        parsed.append(FaultRule.parse({"kind": "status", **shorthand}, "fail_next"))
    return parsed


def configure_faults(store: Store, body: dict[str, Any]) -> None:
    """Check the whole request, then apply it (nothing is applied if any part is wrong)."""
    FAULTS_BODY(body, "body")
    try:
        rules = _fault_rules(body)
        limit = body.get("rate_limit")
        bucket = TokenBucket.parse(limit) if limit else None
    except FaultError as exc:
        raise bad_request(f"bad fault rule: {exc}") from None
    store.knobs.configure(
        rules=rules,
        reject_comment_ids=body.get("reject_comment_ids"),
        latency=None if body.get("latency") is None else float(body["latency"]),
        rate_limit=bucket,
        set_rate_limit=limit is not None,
    )


def clear_faults(store: Store) -> None:
    """Remove every fault rule, comment rejection, rate limit and latency."""
    store.knobs.clear_faults()


def configure_oauth(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    """Register clients, set the token lifetime, revoke or list tokens."""
    OAUTH_BODY(body, "body")
    oauth = store.knobs.oauth
    oauth.clients.update(body.get("clients") or {})
    if body.get("token_lifetime") is not None:
        oauth.lifetime = float(body["token_lifetime"])
    if body.get("revoke"):
        oauth.issued.clear()
    tokens = [key.decode()[len("Bearer ") :] for key in oauth.issued] if body.get("list_tokens") else []
    return {"issued": oauth.requests, "tokens": tokens}


def router(store: Store) -> APIRouter:
    """The emulator-only routes."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/_emulator/stats")
    async def stats() -> Response:
        return ok(stats=store.read(lambda s: s.stats()), time=api_time(now_utc()))

    @routes.post("/_emulator/reset")
    async def reset() -> Response:
        store.reset()
        return ok()

    @routes.post("/_emulator/faults")
    async def set_faults(request: Request) -> Response:
        body = await json_body(request)
        store.read(configure_faults, body)
        return ok()

    @routes.delete("/_emulator/faults")
    async def remove_faults() -> Response:
        store.read(clear_faults)
        return ok()

    @routes.post("/_emulator/oauth")
    async def oauth(request: Request) -> Response:
        body = await json_body(request)
        return ok(**store.read(configure_oauth, body))

    @routes.post("/_emulator/datasets/{project}/{name}/models")
    async def pin_model(project: str, name: str, request: Request) -> Response:
        tag = (await json_body(request)).get("tag")
        return ok(**(await store.write(lambda s: train_version(s, s.dataset(project, name), tag))))

    @routes.post("/_emulator/datasets/{project}/{name}/activity")
    async def activity(project: str, name: str, request: Request) -> Response:
        plan = DayOfActivity.from_body(await json_body(request))
        return ok(**(await store.write(lambda s: replay_day(s, s.dataset(project, name), plan))))

    @routes.put("/_emulator/datasets/{project}/{name}/model-tags/{tag}")
    async def move_tag(project: str, name: str, tag: str, request: Request) -> Response:
        version = (await json_body(request)).get("version")

        def move(s: Store) -> list[dict[str, Any]]:
            dataset = s.dataset(project, name)
            set_tag(s, dataset, tag, version)
            return model_tags(dataset)

        return ok(model_tags=await store.write(move))

    return routes
