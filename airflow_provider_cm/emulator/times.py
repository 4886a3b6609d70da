"""Times as the API writes and reads them: UTC, ISO-8601, microseconds."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from airflow_provider_cm.emulator.errors import bad_request

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: A fraction of a second of any length, and a ``Z`` zone: what Python 3.10's ``fromisoformat``
#: refuses and 3.11's reads. Rewritten to six digits and ``+00:00``, the same time on every Python.
_FRACTION = re.compile(r"(?<=:\d\d)[.,](\d+)")
_ZULU = re.compile(r"[zZ]$")


def now_utc() -> datetime:
    """The current time, in UTC."""
    return datetime.now(timezone.utc)


def format_time(value: datetime) -> str:
    """The API's time form: UTC with microseconds, e.g. ``2018-09-17T09:54:56.332000Z``.

    The year always has four digits (``strftime("%Y")`` writes year 1 as ``1``, which is no
    RFC 3339 time and which :func:`parse_time` would refuse when the client sends it back).
    """
    utc = value.astimezone(timezone.utc)
    return f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any, what: str) -> datetime:
    """Parse an ISO-8601 time; a time without zone is taken as UTC.

    :raises ApiError: 400 naming ``what`` if the value is not such a time.
    """
    if not isinstance(value, str):
        raise bad_request(f"{what} must be an ISO-8601 string")
    text = _ZULU.sub("+00:00", value.strip())
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"{what} is not a valid ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00, before year 1 in UTC
        raise bad_request(f"{what} is out of range in UTC: {value!r}") from None


def time_key(value: datetime) -> int:
    """Microseconds since the epoch: an exact, sortable key."""
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
