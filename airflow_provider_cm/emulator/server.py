"""Run the emulator: in-process on a background thread (tests, demos) or as a process (``__main__``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from airflow_provider_cm.emulator.app import create_app
from airflow_provider_cm.emulator.state.store import Store


class EmulatorServer:
    """A Communications Mining emulator serving real HTTP on a background thread.

    Usage::

        with EmulatorServer(token="my-long-test-token") as server:
            server.url  # e.g. "http://127.0.0.1:51234"

    :param token: the API token the server accepts.
    :param host: interface to listen on.
    :param port: TCP port; 0 picks a free one (read it back from :attr:`port`).
    :param state_path: JSON file to load the data from at start and keep up to date (with a
        journal beside it, so every acknowledged write survives the process being killed).
    """

    def __init__(self, token: str, *, host: str = "127.0.0.1", port: int = 0, state_path: str | None = None) -> None:
        self.token = token
        self.host = host
        self.state = Store(state_path)
        config = uvicorn.Config(
            create_app(token, self.state),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def url(self) -> str:
        """Base URL of the running server, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmulatorServer:
        """Start serving and wait until the socket accepts connections.

        :raises RuntimeError: if the server did not start within ``timeout`` seconds.
        """
        self._thread = threading.Thread(target=self._server.run, name="cm-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Communications Mining emulator did not start")
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        self.port = sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving (saving the state if it has a file) and wait for the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
