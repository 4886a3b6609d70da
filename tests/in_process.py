"""The emulator's ASGI application in the test process, reached by ``requests`` without a socket.

Unit tests (``tests/unit/``) run the provider's real hook, transport and operators against the
real emulator application, with one thing replaced: instead of a TCP connection to an emulator
process, ``requests`` hands each request for :data:`HOST` to the application in this process
(Starlette's test client, which runs it in a background event loop). Everything above the
socket (the retry pipeline, the envelopes, the emulator's rules, faults and billing) is the
same code the integration tests drive over real HTTP.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

#: The emulator's address in unit tests: never resolved, never connected to.
HOST = "http://emulator.test"


class AsgiAdapter(BaseAdapter):
    """A ``requests`` transport adapter that answers from an ASGI application in this process."""

    def __init__(self, app: Any, host: str = HOST) -> None:
        from starlette.testclient import TestClient

        super().__init__()
        self.client = TestClient(app, base_url=host, raise_server_exceptions=False)
        self.client.__enter__()  # runs the application's lifespan, and keeps its event loop

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send ``request`` to the application; return its answer as a :class:`requests.Response`."""
        answer = self.client.request(
            request.method or "GET",
            request.url or HOST,
            content=request.body if isinstance(request.body, bytes | None) else str(request.body).encode("utf-8"),
            headers={key: value for key, value in request.headers.items() if key.lower() != "content-length"},
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(answer.headers)
        response._content = answer.content
        response.url = request.url or HOST
        response.reason = answer.reason_phrase
        response.request = request
        response.encoding = answer.encoding
        return response

    def close(self) -> None:
        """Kept open across sessions: :func:`served_in_process` closes the client at the end."""


@contextlib.contextmanager
def served_in_process(app: Any, host: str = HOST) -> Iterator[AsgiAdapter]:
    """Route every ``requests`` call to ``host`` (an address never resolved, :data:`HOST` unless
    given), from any :class:`requests.Session`, to ``app``. Nested, the innermost routes its host
    and hands every other address to the one around it."""
    adapter = AsgiAdapter(app, host)
    original = requests.Session.get_adapter

    def get_adapter(session: requests.Session, url: str) -> BaseAdapter:
        if url.lower().startswith(host + "/") or url.lower() == host:
            return adapter
        return original(session, url)

    requests.Session.get_adapter = get_adapter  # type: ignore[method-assign]
    try:
        yield adapter
    finally:
        requests.Session.get_adapter = original  # type: ignore[method-assign]
        adapter.client.__exit__(None, None, None)
