"""Unit tests: no server process. The emulator's application runs in this process (tests.in_process).

That rule is enforced, not only followed (see :func:`_no_server`): a unit test that binds or
listens on a socket in the test process, or leaves a process it started listening, fails.

The fixtures of ``tests/conftest.py`` (``hook``, ``workspace``, ``context``...) work here
unchanged: only ``emulator`` is replaced, and the default connection points at the in-process
application for every test of this folder.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Iterator
from typing import Any, NoReturn

import psutil
import pytest

from tests.conftest import TOKEN, Emulator, connection_json
from tests.in_process import HOST, served_in_process

CONNECTION = connection_json(f"{HOST}/acme/production/reinfer_")


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """The emulator's application in this process, for the session (its address is :data:`HOST`)."""
    from airflow_provider_cm.emulator.app import create_app

    previous = os.environ.get("AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT")
    os.environ["AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT"] = CONNECTION  # for module-scoped fixtures too
    try:
        with served_in_process(create_app(TOKEN)):
            yield Emulator(HOST, None)
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT"] = previous


@pytest.fixture(scope="module", autouse=True)
def _default_connection_in_process(emulator: Emulator) -> Iterator[None]:
    """The default connection points at the in-process application for every module-scoped fixture too,
    whatever ran before in this pytest process (under pytest-xdist, an integration module may have)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT", CONNECTION)
        yield


@pytest.fixture(autouse=True)
def _default_connection(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The default connection points at the in-process application during each unit test."""
    monkeypatch.setenv("AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT", CONNECTION)


class ServerInUnitTestError(AssertionError):
    """A unit test started a server: serve the application in process (tests.in_process) or move
    the test to tests/integration."""


def _refuse(what: str) -> Any:
    def refuse(sock: socket.socket, *args: Any) -> NoReturn:
        raise ServerInUnitTestError(
            f"a unit test called socket.{what}{args!r}: unit tests start no server; serve the application"
            " in process (tests/in_process.py) or move the test to tests/integration/"
        )

    return refuse


#: Listening processes this one had started before the current unit module began: under
#: pytest-xdist a worker that ran an integration module first keeps that module's emulator process.
_BEFORE_MODULE: set[int] = set()


def listening_children(ignore: Collection[int] = ()) -> list[str]:
    """The processes this one started (at any depth) that listen on a TCP or UDP port, described.

    :param ignore: pids to leave out (servers that were running before the unit module started).
    """
    return [description for pid, description in _listening(ignore)]


def _listening(ignore: Collection[int] = ()) -> list[tuple[int, str]]:
    found = []
    for child in psutil.Process().children(recursive=True):
        if child.pid in ignore:
            continue
        try:
            ports = [c.laddr for c in child.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
            if ports:
                found.append((child.pid, f"pid {child.pid} ({' '.join(child.cmdline())[:200]}) listens on {ports}"))
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module", autouse=True)
def _no_server() -> Iterator[None]:
    """No server in the unit tier: in this process, ``bind`` and ``listen`` on a socket raise
    :class:`ServerInUnitTestError` for the module's fixtures and tests (a client's ``connect``
    binds implicitly and is left alone; the event loops' wake-up sockets come from ``socketpair``,
    which binds nothing). Module-scoped, so a pytest-xdist worker that runs integration modules
    after unit modules has its sockets back. Server processes are caught by :func:`_no_server_process`.
    """
    _BEFORE_MODULE.clear()
    _BEFORE_MODULE.update(pid for pid, _ in _listening())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "bind", _refuse("bind"))
        patch.setattr(socket.socket, "listen", _refuse("listen"))
        yield


@pytest.fixture(autouse=True)
def _no_server_process() -> Iterator[None]:
    """After each unit test, no process this one started listens on a port: a server process (the
    emulator's, uvicorn, Airflow's api-server) started by the test or by any fixture still alive
    at that point (module- and session-scoped ones included) fails the test. Servers an
    integration module of the same pytest-xdist worker started before this module are not the
    unit tests' and are left out."""
    yield
    listening = listening_children(ignore=_BEFORE_MODULE)
    assert not listening, "a unit test started a server process: " + "; ".join(listening)
