"""Yes/no settings as users write them: booleans, or text from a template or a connection extra."""

from __future__ import annotations

from typing import Any

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def parse_flag(value: Any) -> bool | None:
    """``True`` or ``False`` for a boolean or for ``true``/``false``, ``1``/``0``, ``yes``/``no``,
    ``on``/``off`` in any case; ``None`` for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def as_bool(value: Any, name: str) -> bool:
    """A templated flag as a bool (see :func:`parse_flag`).

    :param name: the parameter's name, for the error.
    :raises ValueError: for anything that is not a yes/no value.
    """
    flag = parse_flag(value)
    if flag is None:
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return flag
