"""Raw e-mails: ``POST .../sources/<p>/<s>/sync-raw-emails`` and ``POST .../labellers/<v>/predict-raw-emails``.

Each document is checked with the client's own rules
(:func:`airflow_provider_cm.api.email_limits.document_problems`: 400 naming the first bad field) and
turned into a comment as the platform does: ``subject`` and ``from``, ``to``/``cc``/``bcc`` from
the headers (RFC 2047 words decoded, addresses as ``Name <addr>``), ``sent_at`` from ``Date`` in
UTC, the body text from the plain body or the text of the HTML body, attachment metadata. The
comment id is the document's ``comment_id``, else the normalised ``Message-ID``, else a hash of
the headers and body. The comment's ``timestamp`` is ``sent_at``; without a readable ``Date`` it
is the stored comment's (a rerun changes nothing), else the upload time.

``sync-raw-emails`` stores the comments through :func:`airflow_provider_cm.emulator.routes.comments.upsert`
(billed like ``sync``) and answers ``{"new", "updated", "unchanged", "comments"?}``;
``predict-raw-emails`` predicts them through :func:`airflow_provider_cm.emulator.routes.predictions.predict`
(billed per e-mail) and answers as ``predict`` does.
"""

from __future__ import annotations

import hashlib
from email import policy
from email.parser import HeaderParser
from html.parser import HTMLParser
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.api.email_limits import MAX_PREDICT_DOCUMENTS, MAX_SYNC_DOCUMENTS, batch_problems
from airflow_provider_cm.api.times import api_time, now_utc
from airflow_provider_cm.emulator.errors import bad_request
from airflow_provider_cm.emulator.openapi import doc
from airflow_provider_cm.emulator.routes import comments as comment_routes
from airflow_provider_cm.emulator.routes import predictions
from airflow_provider_cm.emulator.rules.checks import Check, custom
from airflow_provider_cm.emulator.schemas import COMMENT as COMMENT_ANSWER
from airflow_provider_cm.emulator.schemas import PREDICTION, U32, envelope, list_of, shape
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import json_body, ok
from airflow_provider_cm.pipelines.emails.documents import comment_id as email_comment_id

_TEXT_SCHEMA = {"type": "string"}
_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["raw_email"],
    "properties": {
        "raw_email": {
            "type": "object",
            "required": ["headers", "body"],
            "properties": {
                "headers": {"type": "object", "properties": {"raw": _TEXT_SCHEMA, "parsed": {"type": "object"}}},
                "body": {"type": "object", "properties": {"plain": _TEXT_SCHEMA, "html": _TEXT_SCHEMA}},
                "attachments": {"type": "array", "items": {"type": "object"}},
            },
        },
        "user_properties": {"type": "object"},
        "comment_id": _TEXT_SCHEMA,
    },
}


def _body_check(most: int, extra: dict[str, Any]) -> Check:
    def check(body: Any, where: str) -> None:
        if not isinstance(body, dict):
            raise bad_request(f"{where} must be an object")
        for field, message in batch_problems(body.get("documents"), most):
            raise bad_request(f"{field} {message}")
        tag = body.get("transform_tag")
        if tag is not None and not isinstance(tag, str):
            raise bad_request("transform_tag must be a string")
        if not isinstance(body.get("include_comments", False), bool):
            raise bad_request("include_comments must be true or false")

    schema = {
        "type": "object",
        "required": ["documents"],
        "properties": {
            "documents": {"type": "array", "items": _DOCUMENT_SCHEMA, "maxItems": most},
            "transform_tag": _TEXT_SCHEMA,
            "include_comments": {"type": "boolean"},
            **extra,
        },
    }
    return custom(check, schema)


SYNC_BODY = _body_check(MAX_SYNC_DOCUMENTS, {})
PREDICT_BODY = _body_check(
    MAX_PREDICT_DOCUMENTS,
    {
        "threshold": predictions.PREDICT_BODY_THRESHOLD.schema,
        "labels": predictions.LABEL_THRESHOLDS.schema,
    },
)


class _Text(HTMLParser):
    """The text of an HTML document: no tags, scripts or styles; a line break per block."""

    BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style", "head", "title"):
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_text(html: str) -> str:
    """The text a reader sees in an HTML body (non-breaking spaces as spaces, blank lines folded)."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.replace("\xa0", " ").split()) for line in "".join(parser.parts).splitlines()]
    text: list[str] = []
    for line in lines:
        if line or (text and text[-1]):
            text.append(line)
    return "\n".join(text).strip()


def _headers(raw_email: dict[str, Any]) -> Any:
    headers = raw_email["headers"]
    if "raw" in headers:
        text = headers["raw"]
    else:
        text = "".join(f"{name}: {' '.join(str(value).split())}\n" for name, value in headers["parsed"].items())
    return HeaderParser(policy=policy.default).parsestr(text.rstrip("\r\n") + "\n\n")


def _header(message: Any, name: str) -> Any:
    try:
        return message.get(name)
    except Exception:  # a malformed header the policy cannot parse: absent
        return None


def _addresses(message: Any, name: str) -> list[str]:
    header = _header(message, name)
    if header is None:
        return []
    try:
        return [text for text in (str(address) for address in header.addresses) if text]
    except Exception:  # not an address header the policy can read: its comma-separated text
        return [part.strip() for part in str(header).split(",") if part.strip()]


def email_comment(document: dict[str, Any], stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """The comment the platform makes of a checked document.

    :param stored: the fields of the comment already stored under the same id, whose timestamp an
        e-mail without a readable ``Date`` keeps.
    """
    raw_email = document["raw_email"]
    message = _headers(raw_email)
    body = raw_email["body"]
    text = body["plain"] if "plain" in body else html_text(body["html"])
    entry: dict[str, Any] = {"body": {"text": text}}
    subject = _header(message, "Subject")
    if subject is not None:
        entry["subject"] = {"text": str(subject)}
    senders = _addresses(message, "From")
    if senders:
        entry["from"] = senders[0]
    for field in ("to", "cc", "bcc"):
        recipients = _addresses(message, field.capitalize())
        if recipients:
            entry[field] = recipients
    date = _header(message, "Date")
    sent = getattr(date, "datetime", None)
    if sent is not None:
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=now_utc().tzinfo)
        entry["sent_at"] = api_time(sent)
    comment: dict[str, Any] = {
        "id": comment_id_of(document, message),
        "timestamp": entry.get("sent_at") or (stored or {}).get("timestamp") or api_time(now_utc()),
        "messages": [entry],
    }
    if document.get("user_properties"):
        comment["user_properties"] = dict(document["user_properties"])
    if raw_email.get("attachments"):
        comment["attachments"] = [
            {"name": a["name"], "size": a["size"], "content_type": a["content_type"]} for a in raw_email["attachments"]
        ]
    return comment


def comment_id_of(document: dict[str, Any], message: Any) -> str:
    """The document's ``comment_id``, else its normalised Message-ID, else a hash of its headers and body."""
    if document.get("comment_id"):
        return str(document["comment_id"])
    raw_email = document["raw_email"]
    fallback = repr((raw_email["headers"], raw_email["body"])).encode("utf-8", "surrogatepass")
    message_id = _header(message, "Message-ID")
    if message_id is not None and str(message_id).strip():
        return email_comment_id(str(message_id), fallback)
    return "sha256-" + hashlib.sha256(fallback).hexdigest()


def _comments(store: Store, source: Any, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    made = []
    for index, document in enumerate(documents):
        message = _headers(document["raw_email"])
        stored = source.comments.get(comment_id_of(document, message)) if source is not None else None
        comment = email_comment(document, stored.fields if stored is not None else None)
        comment_routes.check_comment(index, comment)
        reason = store.knobs.reject_comment_ids.get(comment["id"])  # the fault-injection knob of ``sync``
        if reason:
            raise bad_request(f"documents[{index}] (comment id {comment['id']!r}): {reason}")
        made.append(comment)
    return made


def sync_raw_emails(store: Store, project: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Turn the documents into comments and upsert them (billed like ``sync``)."""
    SYNC_BODY(body, "body")
    source = store.source(project, name)
    made = _comments(store, source, body["documents"])
    counts: dict[str, Any] = dict(comment_routes.upsert(store, source, made))
    if body.get("include_comments"):
        counts["comments"] = made
    return counts


def predict_raw_emails(store: Store, project: str, name: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
    """Predict the documents' labels as comments with the version (billed per e-mail)."""
    PREDICT_BODY(body, "body")
    dataset = store.dataset(project, name)
    made = _comments(store, None, body["documents"])
    request = {key: body[key] for key in ("threshold", "labels") if body.get(key) is not None}
    request["documents"] = [
        {k: v for k, v in c.items() if k in ("messages", "timestamp", "user_properties")} for c in made
    ]
    answer = predictions.predict(store, dataset, version, request)
    if body.get("include_comments"):
        answer["comments"] = made
    return answer


def router(store: Store) -> APIRouter:
    """The two raw-e-mail routes."""
    routes = APIRouter()
    synced = envelope(new=U32, updated=U32, unchanged=U32)
    synced["properties"]["comments"] = list_of(COMMENT_ANSWER)
    predicted = envelope(predictions=list_of(PREDICTION), model=shape({"version": U32}))

    @routes.post(api.SYNC_RAW_EMAILS.url, **doc(synced, body=SYNC_BODY, errors=(400, 404)))
    async def sync_route(project: str, name: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(**(await store.write(sync_raw_emails, project, name, body)))

    @routes.post(
        api.PREDICT_RAW_EMAILS.url,
        **doc(predicted, body=PREDICT_BODY, errors=(400, 404)),
    )
    async def predict_route(project: str, name: str, version: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(**(await store.write(predict_raw_emails, project, name, version, body)))

    return routes
