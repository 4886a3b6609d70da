"""One e-mail's bytes -> the raw-e-mail document the API takes, and its stable comment id.

MIME is parsed with the standard library (``email``, ``policy.default``), as leniently as it
allows: other charsets than UTF-8, RFC 2047 encoded words, missing ``Date``/``Message-ID``/
``From``, broken multipart boundaries and nested ``message/rfc822`` parts all give a document
(what was done about them is listed in :attr:`ParsedEmail.notes`). Only what is not an e-mail
at all (an empty file, a file with no header) raises :class:`EmailError`.

The document (API reference section 3.4.4):

* ``headers.raw``: the message's header block as written in the file, without its
  ``Content-Type`` and ``Content-Transfer-Encoding`` headers (the body is sent decoded, so they
  no longer describe it; the official CLI drops them from ``.msg`` headers for the same reason);
* ``body``: the text of the ``text/plain`` body if there is one, else of the ``text/html`` body
  (``{"plain": ...}`` or ``{"html": ...}``, never both: the API takes one);
* ``attachments``: name, size in bytes and content type of each attachment, never the content.

**Oversized bodies are truncated, not refused**: a plain body longer than
:data:`~airflow_provider_cm.api.email_limits.MAX_BODY_PLAIN` characters is cut to that length
(:attr:`ParsedEmail.truncated`; the operators count and log it), because the start of an e-mail
is what a model reads and refusing it would lose the whole message. Everything else beyond a
limit (headers, an HTML-only body over 32 MiB, more than 128 attachments) is refused by
:func:`~airflow_provider_cm.api.email_limits.document_problems`.

**Comment ids** (:func:`comment_id`): the ``Message-ID`` without its angle brackets and
whitespace, else ``sha256-<hex>`` of the message's bytes with line endings, an mbox ``From_``
line and mbox ``>From`` quoting normalised, so the same e-mail read from an ``.eml`` file, from an
mbox or from an Outlook ``.msg`` gets the same id, and a rerun updates nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from airflow_provider_cm.api.email_limits import MAX_ATTACHMENT_TEXT, MAX_BODY_PLAIN, MAX_COMMENT_ID

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_HEADER = re.compile(r"^(content-type|content-transfer-encoding)\s*:", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"<([^<>]+)>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, remembering the class it makes for each header name: the
    registry makes a new class on every header access otherwise, a third of the parse time."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        made = self._made.get(name)
        if made is None:
            made = self._made[name] = super().__getitem__(name)
        return made


#: ``policy.default`` (RFC 5322 parsing, ``EmailMessage``), with the header classes remembered.
POLICY = policy.default.clone(header_factory=_HeaderClasses())


class EmailError(ValueError):
    """Bytes that are not an e-mail (empty, or no header at all); the message says why."""


@dataclass
class ParsedEmail:
    """One e-mail as the API takes it.

    :param comment_id: the stable comment id (:func:`comment_id`).
    :param document: the raw-e-mail document, ``comment_id`` and ``user_properties`` included.
    :param truncated: whether the plain body was cut to the API's limit.
    :param notes: what lenient parsing did (missing headers, defects, a charset decoded with
        replacement characters...), one short sentence each.
    """

    comment_id: str
    document: dict[str, Any]
    truncated: bool = False
    notes: list[str] = field(default_factory=list)


def parse_eml(data: bytes, user_properties: Mapping[str, Any] | None = None) -> ParsedEmail:
    """The document of one RFC 5322 message (an ``.eml`` file or one message of an mbox).

    :param data: the message's bytes.
    :param user_properties: ``{"string:<Name>": str, "number:<Name>": float}`` for the comment.
    :raises EmailError: if ``data`` is empty or holds no header.
    """
    if not data.strip():
        raise EmailError("empty: no bytes but white space")
    data = _without_from_line(data)
    message = BytesParser(policy=POLICY).parsebytes(data)
    if not message.keys():
        raise EmailError("not an e-mail: no header found before the first blank line")
    notes = [f"defect: {type(d).__name__}" for d in message.defects]
    notes += [f"no {name} header" for name in ("From", "Date", "Message-ID") if name not in message]
    body, truncated = _body(message, notes)
    raw_email = {
        "headers": {"raw": _raw_headers(data)},
        "body": body,
        "attachments": _attachments(message, notes),
    }
    identifier = comment_id(_raw_header(message, "Message-ID"), data)
    _replace_undecodable(raw_email, notes)
    document = {"raw_email": raw_email, "user_properties": dict(user_properties or {}), "comment_id": identifier}
    return ParsedEmail(identifier, document, truncated, notes)


#: Why a ``.msg`` file is not read when extract-msg, the provider's optional ``msg`` extra, is not installed.
MSG_EXTRA_MISSING = (
    "reading Outlook .msg files needs extract-msg, the provider's `msg` extra: install it where the task runs "
    'with pip install "airflow-provider-cm[msg]" (from a checkout: pip install ".[msg]"; '
    'or pip install "extract-msg>=0.57.0")'
)


def parse_msg(data: bytes, user_properties: Mapping[str, Any] | None = None) -> ParsedEmail:
    """The document of an Outlook ``.msg`` file, read with extract-msg as the official CLI reads it
    (``re parse msgs``: the transport headers without content headers, the plain body).

    :raises EmailError: if the file is empty or not an Outlook message, or if extract-msg (the
        provider's optional ``msg`` extra) is not installed (:data:`MSG_EXTRA_MISSING`).
    """
    if not data:
        raise EmailError("empty: no bytes")
    try:
        import extract_msg
        from extract_msg.msg_classes import MessageBase
    except ImportError:  # the optional `msg` extra is not installed: the file is dead-lettered with the fix
        raise EmailError(MSG_EXTRA_MISSING) from None
    try:
        msg = extract_msg.openMsg(data)
    except Exception as exc:  # extract-msg raises many kinds for a file that is not OLE or not a message
        raise EmailError(f"not an Outlook .msg message: {type(exc).__name__}: {exc}") from None
    try:
        if not isinstance(msg, MessageBase):
            raise EmailError(f"an Outlook .msg file that holds no e-mail but a {type(msg).__name__}")
        notes: list[str] = []
        headers = "".join(line for line in _header_lines(str(msg.headerText or "")) if not _CONTENT_HEADER.match(line))
        plain = msg.body
        body: dict[str, str]
        if isinstance(plain, str) and plain:
            body = {"plain": plain}
        else:
            html = msg.htmlBody
            body = {"html": html.decode("utf-8", "replace") if isinstance(html, bytes) else str(html or "")}
            if not body["html"]:
                body = {"plain": ""}
                notes.append("no body")
        truncated = _truncate(body)
        attachments = []
        for attachment in msg.attachments:
            content = getattr(attachment, "data", None)
            attachments.append(
                _attachment(
                    str(getattr(attachment, "name", None) or getattr(attachment, "longFilename", None) or "attachment"),
                    len(content) if isinstance(content, bytes) else 0,
                    str(getattr(attachment, "mimetype", None) or "application/octet-stream"),
                    notes,
                )
            )
        message_id = msg.messageId or _message_id_in(headers)
    finally:
        msg.close()
    if not headers.strip():
        notes.append("no transport headers")
    identifier = comment_id(message_id, data)
    raw_email = {"headers": {"raw": headers}, "body": body, "attachments": attachments}
    _replace_undecodable(raw_email, notes)
    document = {
        "raw_email": raw_email,
        "user_properties": dict(user_properties or {}),
        "comment_id": identifier,
    }
    return ParsedEmail(identifier, document, truncated, notes)


def _sendable(text: str) -> str:
    """``text`` with what UTF-8 cannot carry replaced by U+FFFD: bytes the parser kept as escapes
    (a header or body that is not in its charset) and lone surrogates."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return text.encode("utf-8", "replace").decode("utf-8")


def _replace_undecodable(raw_email: dict[str, Any], notes: list[str]) -> None:
    """Make every text of a document UTF-8 (the API's JSON), in place; note it if anything was replaced."""
    replaced = False
    for holder in (raw_email["headers"], raw_email["body"], *raw_email["attachments"]):
        for key, value in holder.items():
            if isinstance(value, str) and not value.isascii() and _SURROGATE.search(value):
                holder[key] = _sendable(value)
                replaced = True
    if replaced:
        notes.append("bytes that are not text in their charset replaced by U+FFFD")


def comment_id(message_id: str | None, data: bytes) -> str:
    """The comment id of an e-mail: its normalised ``Message-ID``, else a hash of its bytes.

    ``<AbC@host>`` and `` < AbC@host > `` (folded) are both ``AbC@host``; a Message-ID that no
    URL path can carry (control characters, ``.``, ``..``), that is not text (bytes that are not
    UTF-8, kept as escapes by the parser) or longer than
    :data:`~airflow_provider_cm.api.email_limits.MAX_COMMENT_ID` is hashed too
    (``msgid-sha256-<hex>``). Without one: ``sha256-<hex>`` of :func:`normalised_bytes`.
    """
    normalised = normalise_message_id(message_id)
    if normalised:
        if (
            len(normalised) <= MAX_COMMENT_ID
            and normalised not in (".", "..")
            and not _CONTROL.search(normalised)
            and not _SURROGATE.search(normalised)
        ):
            return normalised
        return "msgid-sha256-" + hashlib.sha256(normalised.encode("utf-8", "surrogatepass")).hexdigest()
    return "sha256-" + hashlib.sha256(normalised_bytes(data)).hexdigest()


def normalise_message_id(value: str | None) -> str:
    """A Message-ID without white space (folding) or angle brackets; ``""`` if there is none."""
    if not value:
        return ""
    compact = re.sub(r"\s+", "", str(value))
    match = _MESSAGE_ID.search(compact)
    return match.group(1) if match else compact.strip("<>")


def normalised_bytes(data: bytes) -> bytes:
    """A message's bytes as an mbox and an ``.eml`` file of it agree on: LF line endings, no
    ``From_`` line, no ``>From`` quoting, no trailing white space."""
    data = _without_from_line(data.replace(b"\r\n", b"\n"))
    return re.sub(rb"(?m)^>(>*From )", rb"\1", data).rstrip()


def _without_from_line(data: bytes) -> bytes:
    if data.startswith(b"From "):
        end = data.find(b"\n")
        return data[end + 1 :] if end >= 0 else b""
    return data


def _header_lines(headers: str) -> list[str]:
    """Header fields with their folded continuation lines joined, each ending in its line break."""
    fields: list[str] = []
    for line in headers.splitlines(keepends=True):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += line
        elif line.strip():
            fields.append(line)
    return fields


def _raw_headers(data: bytes) -> str:
    match = _HEADER_END.search(data)
    block = data[: match.start()] if match else data
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        text = block.decode("latin-1")  # 8-bit headers in another charset: every byte kept as a character
    return "".join(line for line in _header_lines(text) if not _CONTENT_HEADER.match(line)).rstrip("\r\n")


def _header_text(message: Message, name: str) -> str | None:
    try:
        value = message.get(name)
    except Exception:  # a header the policy cannot parse: its raw value
        value = next((v for k, v in message.raw_items() if k.lower() == name.lower()), None)
    return None if value is None else str(value)


def _raw_header(message: Message, name: str) -> str | None:
    """A header's value as written (no parsing: each parse by ``policy.default`` costs a lot)."""
    wanted = name.lower()
    return next((str(v) for k, v in message.raw_items() if k.lower() == wanted), None)


def _message_id_in(headers: str) -> str | None:
    for line in _header_lines(headers):
        name, _, value = line.partition(":")
        if name.strip().lower() == "message-id":
            return value
    return None


def _text_of(part: Message, notes: list[str]) -> str:
    """The decoded text of a ``text/*`` part, as ``get_content()`` gives it (charset default ASCII,
    replacement characters where it fails), read with fewer header parses; an unknown charset is
    read as UTF-8 (noted)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:  # an undecodable transfer encoding
        notes.append(f"body decoded leniently ({type(exc).__name__}: {exc})")
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = part.get_param("charset", "us-ascii")
    charset = charset if isinstance(charset, str) else "us-ascii"
    try:
        return payload.decode(charset, "replace")
    except LookupError as exc:
        notes.append(f"body decoded leniently (LookupError: {exc})")
        return payload.decode("utf-8", "replace")


def _body(message: EmailMessage, notes: list[str]) -> tuple[dict[str, str], bool]:
    body: dict[str, str]
    part: Message | None = None
    maintype, _, subtype = message.get_content_type().partition("/")
    if message.is_multipart():
        try:
            part = message.get_body(preferencelist=("plain", "html"))
        except Exception as exc:  # a structure the standard library cannot walk
            notes.append(f"body structure unreadable ({type(exc).__name__})")
    elif maintype in ("text", "multipart"):
        part = message  # a single part; a multipart with a broken boundary is read as its raw text
        if maintype == "multipart":
            notes.append("broken multipart: the body is its undivided text")
    if part is None:
        notes.append("no text body")
        body = {"plain": ""}
    elif (subtype if part is message else part.get_content_subtype()) == "html":
        body = {"html": _text_of(part, notes)}
    else:
        body = {"plain": _text_of(part, notes)}
    return body, _truncate(body)


def _truncate(body: dict[str, str]) -> bool:
    text = body.get("plain")
    if text is not None and len(text) > MAX_BODY_PLAIN:
        body["plain"] = text[:MAX_BODY_PLAIN]
        return True
    return False


def _attachments(message: EmailMessage, notes: list[str]) -> list[dict[str, Any]]:
    if not message.is_multipart():
        return []
    found = []
    try:
        parts = list(message.iter_attachments())
    except Exception as exc:
        notes.append(f"attachments unreadable ({type(exc).__name__})")
        return []
    for index, part in enumerate(parts):
        if not isinstance(part, Message):
            continue
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            inner = part.get_payload(0) if part.is_multipart() else None
            size = len(inner.as_bytes()) if isinstance(inner, Message) else 0
            subject = _header_text(inner, "Subject") if isinstance(inner, Message) else None
            name = part.get_filename() or f"{subject or 'message'}.eml"
        else:
            try:
                payload = part.get_payload(decode=True)
            except Exception:
                payload = None
            size = len(payload) if isinstance(payload, bytes) else 0
            try:
                name = part.get_filename() or f"attachment-{index + 1}"
            except Exception:
                name = f"attachment-{index + 1}"
        found.append(_attachment(name, size, content_type, notes))
    return found


def _attachment(name: str, size: int, content_type: str, notes: list[str]) -> dict[str, Any]:
    if len(name) > MAX_ATTACHMENT_TEXT:
        notes.append(f"attachment name shortened to {MAX_ATTACHMENT_TEXT} characters")
        name = name[:MAX_ATTACHMENT_TEXT]
    return {"name": name, "size": size, "content_type": content_type[:MAX_ATTACHMENT_TEXT]}
