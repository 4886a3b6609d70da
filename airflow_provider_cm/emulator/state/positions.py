"""Opaque position tokens: export ``continuation`` and stream ``sequence_id`` values.

A position is ``(time key, uid)``: everything up to and including that comment in the order of
the listing. The token is its JSON, base64url-encoded without padding.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from airflow_provider_cm.emulator.errors import bad_request


def encode_position(key: int, uid: str) -> str:
    """The token for the position ``(key, uid)``."""
    raw = json.dumps([key, uid], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_position(token: Any, what: str = "continuation") -> tuple[int, str]:
    """The position a token stands for.

    :raises ApiError: 400 naming ``what`` if the token is not one the emulator issued.
    """
    if not isinstance(token, str) or not token:
        raise bad_request(f"{what} must be a non-empty string")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key, uid = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise bad_request(f"{what} is not valid") from None
    if isinstance(key, bool) or not isinstance(key, int) or not isinstance(uid, str):
        raise bad_request(f"{what} is not valid")
    return key, uid
