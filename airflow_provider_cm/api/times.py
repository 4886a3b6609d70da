"""Times as the Communications Mining API reads and writes them: the one implementation.

The API returns RFC 3339 UTC times with microseconds (``2026-10-01T12:00:00.000000Z``) and takes
any RFC 3339 time in filters. The hook, the operators and the emulator all write times with
:func:`api_time` and read the API's times with :func:`parse_time`, so client and emulator cannot
drift. Users' arguments (a datetime or any ISO-8601 string) go through
:func:`airflow_provider_cm.client.user_times.to_utc` first.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: A fraction of a second of any length, and a ``Z`` zone: what Python 3.10's ``fromisoformat``
#: refuses and 3.11's reads. Rewritten to six digits and ``+00:00``, the same time on every Python.
_FRACTION = re.compile(r"(?<=:\d\d)[.,](\d+)")
_ZULU = re.compile(r"[zZ]$")


def now_utc() -> datetime:
    """The current time, in UTC."""
    return datetime.now(timezone.utc)


def api_time(value: datetime) -> str:
    """RFC 3339 UTC with microseconds, the form the API returns (``2026-10-01T12:00:00.000000Z``).

    The year always has four digits (``strftime("%Y")`` writes year 1 as ``1``, which is no
    RFC 3339 time and which :func:`parse_time` would refuse when it comes back).
    """
    utc = value.astimezone(timezone.utc)
    return f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any, what: str) -> datetime:
    """An ISO-8601 time as a UTC datetime; a time without zone is taken as UTC.

    :param value: the time as the API (or a request to it) writes it.
    :param what: what the value is, for the error message (e.g. ``"timestamp"``).
    :raises ValueError: naming ``what`` if the value is not such a time or is out of range in UTC.
    """
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an ISO-8601 string")
    text = _ZULU.sub("+00:00", value.strip())
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} is not a valid ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00, before year 1 in UTC
        raise ValueError(f"{what} is out of range in UTC: {value!r}") from None


def time_key(value: datetime) -> int:
    """Microseconds since the epoch: an exact, sortable key."""
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def at_or_after(moment: str, end: datetime, end_key: str | None = None) -> bool:
    """Whether an API time string is at or after ``end``.

    :param moment: a time as the API returned it; empty means "no time" (``False``).
    :param end: the bound.
    :param end_key: ``api_time(end)``, when the caller has it: times in the API's own fixed-width
        UTC form are then compared as strings, which is much faster than parsing each one.
    :raises ValueError: if ``moment`` is not an ISO-8601 time.
    """
    if not moment:
        return False
    end_key = end_key or api_time(end)
    if len(moment) == len(end_key) and moment.endswith("Z") and moment[10] == "T":
        return moment >= end_key  # same fixed-width UTC form: string order is time order
    return parse_time(moment, "comment time") >= end
