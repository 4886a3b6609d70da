"""The API's wire format: JSON request bodies in, the ``status`` envelope out."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from fastapi import Request
from fastapi.responses import Response

from airflow_provider_cm.api import times
from airflow_provider_cm.emulator.errors import bad_request


def json_response(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``payload`` as compact UTF-8 JSON."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def ok(**payload: Any) -> Response:
    """``{"status": "ok", ...payload}`` with HTTP 200."""
    return json_response({"status": "ok", **payload})


def error(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """``{"status": "error", "message": ...}`` with an error status."""
    return json_response({"status": "error", "message": message}, status_code, headers)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON, but no double holds it
        raise ValueError(f"{text} is out of range")
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


#: Stack frames kept free when parsing: what is accepted here must also be written out later
#: (the journal, the response), from deeper in the stack, without reaching Python's recursion
#: limit, which the JSON encoder and decoder count nesting against.
PARSE_HEADROOM = 128


def _parse(raw: bytes, headroom: int = PARSE_HEADROOM) -> Any:
    """``json.loads`` of standard JSON, run ``headroom`` calls deeper than the caller."""
    if headroom:
        return _parse(raw, headroom - 1)
    return json.loads(raw, parse_float=_finite, parse_constant=_not_json)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body).

    Only standard JSON is taken: ``NaN``, ``Infinity``, numbers beyond a double's range and
    strings holding half a surrogate pair (``"\\ud800"``) are refused, as anything stored from
    them would be answered as something that is not JSON, or not at all; so is a body nested
    so deeply that it could not be written out again (about 800 levels).

    :raises ApiError: 400 if the body is not JSON or not an object.
    """
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = _parse(raw)
    except ValueError:
        raise bad_request("request body is not valid JSON") from None
    except RecursionError:
        raise bad_request("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    if (b"\\ud" in raw or b"\\uD" in raw) and not _encodable(body):
        raise bad_request("request body holds a lone surrogate: a \\ud800-\\udfff escape without its pair")
    return body


def _encodable(body: Any) -> bool:
    """Whether every string of ``body`` is valid Unicode (escaped surrogates come in pairs)."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def segment(value: str) -> str:
    """A path segment as sent, percent-decoded (routes match on the raw, encoded path)."""
    return unquote(value)


def parse_time(value: Any, what: str) -> datetime:
    """An ISO-8601 time of a request (:func:`airflow_provider_cm.api.times.parse_time`), as UTC.

    :raises ApiError: 400 naming ``what`` if the value is not such a time.
    """
    try:
        return times.parse_time(value, what)
    except ValueError as problem:
        raise bad_request(str(problem)) from None
