"""Operators run in processes of their own, forked from one that has already imported them.

The crash-safety tests SIGKILL an operator in the middle of its work, so it must run in a process
of its own; a new interpreter spends about 3 s of CPU importing Airflow before its first request.
Here a forkserver (one process per test process, started on first use, which imported the operator
modules once) forks each run: a separate process, killed with SIGKILL as before, that starts with
the modules loaded. Each run gets the caller's environment at the time of the call (connections,
Airflow home) and, like the ``python -c`` runs it replaces, writes no output (the result comes back
over a pipe). This module imports nothing of the test suite (its conftest would give the process
another Airflow home).
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

MODULES = (
    "airflow_provider_cm.operators.comments",
    "airflow_provider_cm.operators.datasets",
    "airflow_provider_cm.operators.streams",
)
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([*MODULES, __name__])


def _execute(module: str, cls: str, kwargs: dict[str, Any], env: dict[str, str], sender: Connection) -> None:
    """In the child: the caller's environment, no output, ``cls(**kwargs).execute({})`` as JSON on ``sender``."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.environ.clear()
    os.environ.update(env)
    operator = getattr(importlib.import_module(f"airflow_provider_cm.operators.{module}"), cls)
    sender.send(json.dumps(operator(task_id="crash", **kwargs).execute({})))
    sender.close()


def start(module: str, cls: str, kwargs: dict[str, Any]) -> tuple[BaseProcess, Connection]:
    """Start ``airflow_provider_cm.operators.<module>.<cls>(task_id="crash", **kwargs).execute({})`` in a
    process of its own; the process and the end of the pipe its JSON result arrives on."""
    results, sender = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(target=_execute, args=(module, cls, kwargs, dict(os.environ), sender))
    process.start()
    sender.close()
    return process, results


def result(process: BaseProcess, results: Connection, timeout: float) -> Any:
    """The run's result once it has ended; ``AssertionError`` if it failed or took over ``timeout`` s."""
    assert results.poll(timeout), f"the operator did not finish in {timeout} s"
    try:
        value = json.loads(results.recv())
    except EOFError:
        value = None
    process.join(60)
    assert process.exitcode == 0 and value is not None, f"the operator failed (exit code {process.exitcode})"
    return value
