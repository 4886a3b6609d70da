"""The unit tier starts no server: the guards of tests/unit/conftest.py fail a test that does."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.unit.conftest import _BEFORE_MODULE, ServerInUnitTestError, listening_children

UNIT = Path(__file__).resolve().parent

#: What starts a server (or picks its port); the unit tier serves the application in process instead.
SERVER_NAMES = {"start_emulator_process", "free_port", "EmulatorServer", "uvicorn", "http.server", "socketserver"}


def test_binding_or_listening_on_a_socket_fails_a_unit_test():
    with socket.socket() as sock:
        with pytest.raises(ServerInUnitTestError, match="unit tests start no server"):
            sock.bind(("127.0.0.1", 0))
        with pytest.raises(ServerInUnitTestError):
            sock.listen()
    with pytest.raises(ServerInUnitTestError):
        socket.create_server(("127.0.0.1", 0))
    with pytest.raises(ServerInUnitTestError):
        ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)


def test_a_child_process_listening_on_a_port_is_found():
    """What ``_no_server_process`` checks after every unit test (this child is stopped before it does)."""
    code = (
        "import socket, sys\n"
        "s = socket.socket()\n"
        "s.bind(('127.0.0.1', 0))\n"
        "s.listen()\n"
        "print('listening', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "listening\n"
        [found] = listening_children(ignore=_BEFORE_MODULE)
        assert f"pid {child.pid} " in found and "127.0.0.1" in found
    finally:
        child.kill()
        child.wait(timeout=15)
    assert listening_children(ignore=_BEFORE_MODULE) == []


def _server_names(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names} & SERVER_NAMES
        elif isinstance(node, ast.ImportFrom):
            found |= ({node.module or ""} | {alias.name for alias in node.names}) & SERVER_NAMES
    return found


def test_no_unit_module_imports_what_starts_a_server():
    """A static early warning beside the guards: the names the integration tier uses to start servers."""
    found = {str(p.relative_to(UNIT)): names for p in sorted(UNIT.rglob("*.py")) if (names := _server_names(p))}
    assert found == {"test_no_server.py": {"http.server"}}, found
