"""Times as users give them (a datetime, or any ISO-8601 string pendulum reads) turned into UTC.

Operators turn their arguments and the run's data interval into timezone-aware UTC datetimes with
:func:`to_utc`, and back into the API's form with :func:`airflow_provider_cm.api.times.api_time`.
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
