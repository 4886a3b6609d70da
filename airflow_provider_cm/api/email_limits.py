"""The rules of a raw-e-mail document (``sync-raw-emails``, ``predict-raw-emails``), written once.

:func:`document_problems` is the one check of a document's shape and limits: the upload and
predict operators run it on every document before anything is sent, and the emulator's routes
run it on every document they receive (answering 400 naming the field), so the client and the
emulator cannot disagree about what the API takes.

Shape [cli:api/src/resources/documents.rs]: ``{"raw_email": {"headers": {"raw": str} | {"parsed":
{name: str}}, "body": {"plain": str} | {"html": str}, "attachments": [{"name", "size",
"content_type"}]}, "user_properties": {...}, "comment_id"?: str}``. Limits (API reference section
3.4.4, from the vendor's 2021 schema): at most 16,384 documents a request, ``headers.raw`` and
``body.plain`` at most 65,536 characters, ``body.html`` at most 33,554,432, at most 128
attachments whose ``name`` and ``content_type`` are at most 256 characters. (A later generated
client says "a batch of at most 4096 raw emails"; the operators send 1,024 a request by default,
under both.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# re-exported: e-mail readers and routes take every e-mail limit from here
from airflow_provider_cm.api.limits import MAX_PREDICT_DOCUMENTS as MAX_PREDICT_DOCUMENTS

#: The official CLI's default ``transform_tag`` [cli:cli/src/commands/mod.rs ``DEFAULT_TRANSFORM_TAG``].
DEFAULT_TRANSFORM_TAG = "generic.0.CONVKER5"
#: Most documents one ``sync-raw-emails`` request takes.
MAX_SYNC_DOCUMENTS = 16384
#: Most characters of ``raw_email.headers.raw``.
MAX_HEADERS_RAW = 65536
#: Most characters of ``raw_email.body.plain``.
MAX_BODY_PLAIN = 65536
#: Most characters of ``raw_email.body.html``.
MAX_BODY_HTML = 33_554_432
#: Most attachments of one e-mail.
MAX_ATTACHMENTS = 128
#: Most characters of an attachment's ``name`` and ``content_type``.
MAX_ATTACHMENT_TEXT = 256
#: Most characters of a comment id (the API states none; ids longer than this are hashed).
MAX_COMMENT_ID = 1024

_PROPERTY_PREFIXES = ("string:", "number:")


def document_problems(document: Any) -> list[tuple[str, str]]:
    """Every way ``document`` breaks the API's rules for a raw-e-mail document.

    :param document: a decoded JSON value, meant to be one document.
    :return: ``[(field, message)]``, empty when the document is valid; ``field`` is a path under
        the document such as ``raw_email.body.plain``.
    """
    if not isinstance(document, Mapping):
        return [("(document)", "must be an object")]
    problems: list[tuple[str, str]] = []
    raw = document.get("raw_email")
    if not isinstance(raw, Mapping):
        problems.append(("raw_email", "is required and must be an object"))
    else:
        problems += _headers_problems(raw.get("headers"))
        problems += _body_problems(raw.get("body"))
        problems += _attachments_problems(raw.get("attachments"))
    properties = document.get("user_properties")
    if properties is not None:
        problems += user_properties_problems(properties)
    comment_id = document.get("comment_id")
    if comment_id is not None and (
        not isinstance(comment_id, str) or not comment_id.strip() or len(comment_id) > MAX_COMMENT_ID
    ):
        problems.append(("comment_id", f"must be a non-blank string of at most {MAX_COMMENT_ID} characters"))
    return problems


def batch_problems(documents: Any, most: int = MAX_SYNC_DOCUMENTS) -> list[tuple[str, str]]:
    """The problems of a request's ``documents``: its size, then each document's (fields as
    ``documents[<i>].<field>``)."""
    if not isinstance(documents, list):
        return [("documents", "is required and must be a list")]
    if len(documents) > most:
        return [("documents", f"holds {len(documents)} documents, more than the {most} a request takes")]
    return [
        (f"documents[{i}].{field}", message) for i, d in enumerate(documents) for field, message in document_problems(d)
    ]


def _text_problem(field: str, value: Any, most: int) -> list[tuple[str, str]]:
    if not isinstance(value, str):
        return [(field, "must be a string")]
    if len(value) > most:
        return [(field, f"has {len(value)} characters, more than the {most} the API takes")]
    return []


def _one_of(field: str, value: Any, kinds: tuple[str, str]) -> tuple[str | None, list[tuple[str, str]]]:
    if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in kinds:
        return None, [(field, f"must be an object with exactly one of {kinds[0]!r} or {kinds[1]!r}")]
    return next(iter(value)), []


def _headers_problems(headers: Any) -> list[tuple[str, str]]:
    kind, problems = _one_of("raw_email.headers", headers, ("raw", "parsed"))
    if kind == "raw":
        return _text_problem("raw_email.headers.raw", headers["raw"], MAX_HEADERS_RAW)
    if kind == "parsed":
        parsed = headers["parsed"]
        if not isinstance(parsed, Mapping) or not all(isinstance(v, str) for v in parsed.values()):
            return [("raw_email.headers.parsed", "must map header names to strings")]
        size = sum(len(k) + len(v) + 3 for k, v in parsed.items())
        if size > MAX_HEADERS_RAW:
            return [("raw_email.headers.parsed", f"holds {size} characters, more than the {MAX_HEADERS_RAW} allowed")]
    return problems


def _body_problems(body: Any) -> list[tuple[str, str]]:
    kind, problems = _one_of("raw_email.body", body, ("plain", "html"))
    if kind == "plain":
        return _text_problem("raw_email.body.plain", body["plain"], MAX_BODY_PLAIN)
    if kind == "html":
        return _text_problem("raw_email.body.html", body["html"], MAX_BODY_HTML)
    return problems


def _attachments_problems(attachments: Any) -> list[tuple[str, str]]:
    if attachments is None:
        return []
    if not isinstance(attachments, list):
        return [("raw_email.attachments", "must be a list")]
    if len(attachments) > MAX_ATTACHMENTS:
        return [
            ("raw_email.attachments", f"holds {len(attachments)} attachments, more than the {MAX_ATTACHMENTS} allowed")
        ]
    problems: list[tuple[str, str]] = []
    for i, attachment in enumerate(attachments):
        field = f"raw_email.attachments[{i}]"
        if not isinstance(attachment, Mapping):
            problems.append((field, "must be an object"))
            continue
        problems += _text_problem(f"{field}.name", attachment.get("name"), MAX_ATTACHMENT_TEXT)
        problems += _text_problem(f"{field}.content_type", attachment.get("content_type"), MAX_ATTACHMENT_TEXT)
        size = attachment.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            problems.append((f"{field}.size", "must be a whole number of bytes, 0 or more"))
    return problems


def user_properties_problems(properties: Any) -> list[tuple[str, str]]:
    """The problems of ``user_properties``: ``{"string:<Name>": str, "number:<Name>": finite number}``."""
    if not isinstance(properties, Mapping):
        return [("user_properties", "must be an object")]
    problems = []
    for key, value in properties.items():
        field = f"user_properties[{key!r}]"
        if not isinstance(key, str) or not key.startswith(_PROPERTY_PREFIXES) or len(key) == len("string:"):
            problems.append((field, "keys are 'string:<Name>' or 'number:<Name>'"))
        elif key.startswith("string:") and not isinstance(value, str):
            problems.append((field, "a string: property takes a string"))
        elif key.startswith("number:") and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value != value
            or abs(value) == float("inf")
        ):
            problems.append((field, "a number: property takes a finite number"))
    return problems
