"""Times as the Communications Mining API reads and writes them.

The API returns RFC 3339 UTC times with microseconds (``2026-10-01T12:00:00.000000Z``) and takes
any RFC 3339 time in filters. Operators turn their arguments and the run's data interval into
timezone-aware UTC datetimes with :func:`to_utc` and back into API strings with :func:`api_time`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pendulum


def to_utc(value: Any, what: str) -> datetime:
    """A timezone-aware UTC datetime from a datetime or an ISO-8601 string (no zone means UTC).

    :param value: a :class:`datetime` (pendulum's too) or an ISO-8601 string.
    :param what: what the value is, for the error message (e.g. ``"start"``).
    :raises ValueError: naming ``what`` if the value is not a time.
    """
    if isinstance(value, str):
        try:
            value = pendulum.parse(value)
        except Exception:
            raise ValueError(f"{what} is not an ISO-8601 time: {value!r}") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime or an ISO-8601 string, got {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, timezone.utc
    )


def api_time(value: datetime) -> str:
    """RFC 3339 UTC with microseconds, the form the API returns (``2026-10-01T12:00:00.000000Z``)."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def at_or_after(moment: str, end: datetime, end_key: str | None = None) -> bool:
    """Whether an API time string is at or after ``end``.

    :param moment: a time as the API returned it; empty means "no time" (``False``).
    :param end: the bound.
    :param end_key: ``api_time(end)``, when the caller has it: times in the API's own fixed-width
        UTC form are then compared as strings, which is much faster than parsing each one.
    """
    if not moment:
        return False
    end_key = end_key or api_time(end)
    if len(moment) == len(end_key) and moment.endswith("Z") and moment[10] == "T":
        return moment >= end_key  # same fixed-width UTC form: string order is time order
    return to_utc(moment, "comment time") >= end
