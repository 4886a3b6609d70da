"""Label names as the provider writes them: one string, levels joined by ``" > "``.

The API writes a hierarchical label as a list of levels (``["Billing", "Refund"]``) in some
answers and as one string in others; the official client joins the levels with ``" > "``
(the documented separator, spaces included). Everything the provider hands to users, logs and
files uses the joined form; requests that take the list form get :func:`label_levels`.
"""

from __future__ import annotations

from typing import Any

#: The documented separator between the levels of a hierarchical label name.
LEVEL_SEPARATOR = " > "


def label_name(name: Any) -> str:
    """A label name as one string: a list of levels is joined with ``" > "``."""
    return LEVEL_SEPARATOR.join(str(level) for level in name) if isinstance(name, list) else str(name)


def label_levels(name: str) -> list[str]:
    """A ``"Parent > Child"`` name as the list of its levels, as the API's list form takes it."""
    return name.split(LEVEL_SEPARATOR)
