"""A stable hash of a row's data: the same values give the same hash on every run, machine and Python.

SHA-256 over a canonical JSON of the data columns in the model's order: times as UTC ISO-8601
with microseconds, floats by ``repr`` (shortest round-trip form), JSON values with sorted keys.
Metadata columns (load id, extracted-at, the hash itself, deleted-at) are not part of it, so a
row re-read unchanged hashes the same and is not written again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

#: Built once: ``json.dumps`` with these options would build an encoder for every row.
_ENCODE = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str).encode
#: Values written as they are (``bool`` is an ``int``; checked by exact type, as a subclass may not be).
_PLAIN = frozenset({str, int, bool, type(None), dict, list})


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, float):
        return repr(value)
    return value


def row_hash(row: Mapping[str, Any], columns: Sequence[str]) -> str:
    """The hex SHA-256 of ``row``'s values of ``columns`` (a missing column counts as null)."""
    values = [value if type(value) in _PLAIN else _canonical(value) for value in map(row.get, columns)]
    return hashlib.sha256(_ENCODE(values).encode("utf-8")).hexdigest()
