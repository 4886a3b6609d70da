"""How an annotation read by uids (``GET .../labellings?id=...``) is split into requests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from urllib.parse import quote

from airflow_provider_cm.api.limits import MAX_ANNOTATION_READ_IDS

#: Most bytes of query string one annotation read carries: well under the 8 KiB request line
#: that common servers and gateways accept, with room for the endpoint and path.
MAX_ANNOTATION_READ_QUERY = 4096


def annotation_read_chunks(uids: Sequence[str]) -> Iterator[list[str]]:
    """Split uids into the groups one annotation read asks for: at most
    :data:`~airflow_provider_cm.api.limits.MAX_ANNOTATION_READ_IDS` uids and
    :data:`MAX_ANNOTATION_READ_QUERY` bytes of query each."""
    chunk: list[str] = []
    size = 0
    for uid in uids:
        cost = len("id=") + len(quote(uid, safe="")) + 1
        if chunk and (len(chunk) >= MAX_ANNOTATION_READ_IDS or size + cost > MAX_ANNOTATION_READ_QUERY):
            yield chunk
            chunk, size = [], 0
        chunk.append(uid)
        size += cost
    if chunk:
        yield chunk
