"""Comments: upsert (``sync``), create-only upload, get one, delete.

Comments are upserted by id within a source; ``uid`` is ``<source_id>.<id>``; ``created_at`` is
set on first insert; billing counts created comments and updated ones whose text changed; when a
comment's messages change, the entities assigned to it are dropped. Every comment is checked
against the one schema of a comment (:mod:`airflow_provider_cm.api.comment_schema`, which the
client's validator uses too) before anything is stored.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api import comment_schema as schema
from airflow_provider_cm.api import routes as api
from airflow_provider_cm.api.limits import MAX_DELETE_IDS, MAX_SYNC_COMMENTS
from airflow_provider_cm.api.times import api_time, now_utc
from airflow_provider_cm.emulator.errors import bad_request, conflict, not_found
from airflow_provider_cm.emulator.openapi import doc, query_list
from airflow_provider_cm.emulator.routes.labellings import public_comment
from airflow_provider_cm.emulator.rules.checks import array, custom, obj, string
from airflow_provider_cm.emulator.schemas import COMMENT as COMMENT_ANSWER
from airflow_provider_cm.emulator.schemas import U32, envelope
from airflow_provider_cm.emulator.state.records import Comment, Source
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import json_body, ok, parse_time, segment


def _check_comment(value: Any, where: str) -> None:
    try:
        schema.check_comment(value, root=where)
    except schema.RecordError as exc:
        raise bad_request(f"{exc.field}: {exc.message}") from None


def _check_messages(value: Any, where: str) -> None:
    try:
        schema.check_messages(value, root=where)
    except schema.RecordError as exc:
        raise bad_request(f"{exc.field}: {exc.message}") from None


#: A comment, checked against the one schema the client's validator uses too.
COMMENT = custom(_check_comment, schema.comment_json_schema())
#: A comment's (or a predicted document's) messages, by the same schema.
MESSAGES = custom(_check_messages, schema.messages_json_schema())

#: The body of ``sync`` and the create-only upload (as :func:`comment_batch` reads it).
BATCH_BODY = obj({"comments": array(COMMENT, max_items=MAX_SYNC_COMMENTS)}, required=("comments",))
#: The ``?id=`` values of a delete.
DELETE_IDS = array(string(), min_items=1, max_items=MAX_DELETE_IDS)
COMMENT_IDS = query_list("id", DELETE_IDS, required=True, description="the ids of the comments to delete")

#: Fields the emulator sets itself; a client's values for them are ignored.
_SERVER_FIELDS = ("uid", "created_at", "has_annotations", "_keys")


def check_comment(index: int, comment: Any) -> None:
    """Apply the documented constraints on a comment sent to ``sync`` or the create-only upload."""
    where = f"comments[{index}]"
    if isinstance(comment, dict) and isinstance(comment.get("id"), str) and comment["id"]:
        where = f"{where} (id {comment['id']!r})"
    COMMENT(comment, where)


def comment_batch(store: Store, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``comments`` of a request, each checked (400 for the first bad one)."""
    comments = body.get("comments")
    if not isinstance(comments, list):
        raise bad_request("body must be {'comments': [...]}")
    if len(comments) > MAX_SYNC_COMMENTS:
        raise bad_request(f"at most {MAX_SYNC_COMMENTS} comments per request, got {len(comments)}")
    for index, comment in enumerate(comments):
        check_comment(index, comment)
        reason = store.knobs.reject_comment_ids.get(comment["id"])
        if reason:
            raise bad_request(f"comments[{index}] (id {comment['id']!r}): {reason}")
    return comments


def stored_form(comment: dict[str, Any]) -> dict[str, Any]:
    """A comment as stored: server fields dropped, the timestamp normalised, blank strings dropped."""
    stored = {k: v for k, v in comment.items() if k not in _SERVER_FIELDS and v is not None}
    stored["timestamp"] = api_time(parse_time(comment["timestamp"], "timestamp"))
    properties = stored.get("user_properties")
    if properties:
        stored["user_properties"] = {k: v for k, v in properties.items() if not (isinstance(v, str) and not v.strip())}
    return stored


def _message_texts(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple((m.get(part) or {}).get("text") for part in ("subject", "body", "signature")) for m in messages]


def _upsert_one(store: Store, source: Source, stored: dict[str, Any], created_at: str) -> tuple[str, bool]:
    """Store one comment: ``(outcome, billed)`` where outcome is ``new``, ``updated`` or ``unchanged``."""
    old = source.comments.get(stored["id"])
    if old is None:
        store.put_comment(source, Comment(stored, f"{source.id}.{stored['id']}", created_at))
        return "new", True
    if old.fields == stored:
        return "unchanged", False
    billed = _message_texts(old.fields.get("messages", [])) != _message_texts(stored.get("messages", []))
    store.put_comment(source, old.changed(stored))
    if old.fields.get("messages") != stored.get("messages"):
        store.drop_assigned_entities(old.uid)
    return "updated", billed


def upsert(store: Store, source: Source, comments: list[dict[str, Any]]) -> dict[str, int]:
    """Create or update comments by id; bill new ones and those whose text changed."""
    counts = {"new": 0, "updated": 0, "unchanged": 0}
    created_at = api_time(now_utc())
    billed = 0
    for comment in comments:
        outcome, charge = _upsert_one(store, source, stored_form(comment), created_at)
        counts[outcome] += 1
        billed += charge
    store.bill_comments(source, billed)
    return counts


def sync(store: Store, project: str, name: str, body: dict[str, Any]) -> dict[str, int]:
    """``POST .../sync``: upsert a batch, answer the counts."""
    source = store.source(project, name)
    return upsert(store, source, comment_batch(store, body))


def put_comments(store: Store, project: str, name: str, body: dict[str, Any]) -> None:
    """Create-only upload (private ``PUT .../comments``): 409 for an id holding different data."""
    source = store.source(project, name)
    comments = comment_batch(store, body)
    for index, comment in enumerate(comments):
        old = source.comments.get(comment["id"])
        if old is not None and old.fields != stored_form(comment):
            raise conflict(f"comments[{index}] (id {comment['id']!r}) already exists with different data")
    new = [c for c in comments if c["id"] not in source.comments]
    if new:
        upsert(store, source, new)


def delete_comments(store: Store, project: str, name: str, ids: list[str]) -> None:
    """``DELETE .../comments?id=..``: forget up to 32 comments and their annotations."""
    source = store.source(project, name)
    DELETE_IDS(ids, "the ?id= values")
    for comment_id in ids:
        store.delete_comment(source, comment_id)


def get_comment(store: Store, project: str, name: str, comment_id: str) -> dict[str, Any]:
    """One comment by id, as the API shows it."""
    comment = store.source(project, name).comments.get(comment_id)
    if comment is None:
        raise not_found()
    return public_comment(store, comment)


def router(store: Store) -> APIRouter:
    """The comment routes; comment ids are matched percent-encoded, as sent."""
    routes = APIRouter()

    @routes.post(
        api.SYNC_COMMENTS.url,
        **doc(envelope(new=U32, updated=U32, unchanged=U32), body=BATCH_BODY, errors=(400, 404)),
    )
    async def sync_route(project: str, name: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(**(await store.write(sync, project, name, body)))

    @routes.put(api.PUT_COMMENTS.url, **doc(envelope(), body=BATCH_BODY, errors=(400, 404, 409)))
    async def put_route(project: str, name: str, request: Request) -> Response:
        await store.write(put_comments, project, name, await json_body(request))
        return ok()

    @routes.get(api.GET_COMMENT.url, **doc(envelope(comment=COMMENT_ANSWER), errors=(404,)))
    async def get_route(project: str, name: str, comment_id: str) -> Response:
        return ok(comment=store.read(get_comment, project, name, segment(comment_id)))

    @routes.delete(api.DELETE_COMMENTS.url, **doc(envelope(), errors=(400, 404), query=[COMMENT_IDS]))
    async def delete_route(project: str, name: str, request: Request) -> Response:
        await store.write(delete_comments, project, name, request.query_params.getlist("id"))
        return ok()

    return routes
