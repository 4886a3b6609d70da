"""Where a task runs: its executor, and what a worker-local file or database means under it.

LocalExecutor runs every task on one machine, so a file one task writes to a local path is there
for the next. CeleryExecutor, KubernetesExecutor, EdgeExecutor and every managed Airflow service
run tasks on several workers that share no local disk: a local path written by one task may be
missing, or be another worker's older copy, when the next task runs. Tasks hand files over
through object storage (an ``s3://``, ``gs://``, ``abfs://``... URI) or a volume every worker
mounts there. A volume is legitimate, so the operators warn about a local path, never refuse it.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

#: Executors that run every task on the machine of the scheduler or of ``dag.test()``.
SINGLE_MACHINE_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})

#: How to hand files over between workers, said in every warning.
FIX = (
    "hand files over through object storage (an s3://, gs:// or abfs:// URI, with an Airflow connection) "
    "or a volume that every worker mounts at the same path"
)


def hostname() -> str:
    """This worker's name as Airflow records it on the task instance (``[core] hostname_callable``)."""
    try:
        from airflow.sdk.api.client import get_hostname

        return str(get_hostname())
    except Exception:  # an Airflow without it, or a callable that fails: the machine's name
        return socket.gethostname()


def executor_name(task: Any = None) -> str:
    """The executor that runs ``task``: its own ``executor`` argument, else the default of ``[core] executor``.

    The class name alone (``CeleryExecutor`` for ``airflow.providers.celery...CeleryExecutor`` or
    an alias ``celery:...CeleryExecutor``).
    """
    chosen = getattr(task, "executor", None)
    if not chosen:
        from airflow.sdk import conf

        chosen = (conf.get("core", "executor", fallback="LocalExecutor") or "LocalExecutor").split(",")[0]
    return str(chosen).strip().split(":")[-1].split(".")[-1] or "LocalExecutor"


def spreads_over_workers(task: Any = None) -> bool:
    """Whether ``task``'s executor may run the tasks of one DAG run on different machines."""
    return executor_name(task) not in SINGLE_MACHINE_EXECUTORS


def is_local(path: Any) -> bool:
    """Whether ``path`` (a string, ``os.PathLike`` or ``ObjectStoragePath``) is on this machine's disk."""
    protocol = getattr(path, "protocol", None)
    if protocol is not None:
        return protocol in ("file", "local")
    text = os.fspath(path).strip()
    return "://" not in text or text.startswith(("file://", "local://"))


def warn_if_worker_local(task: Any, path: Any, role: str, log: logging.Logger | Any = None) -> bool:
    """Warn once per task and role when a hand-off ``path`` is local under an executor with several workers.

    :param task: the operator (its ``executor`` and ``task_id``; its log unless ``log`` is given).
    :param path: the path as given.
    :param role: what the path is, e.g. ``"output_path"`` or ``"dead-letter file"``.
    :return: whether it warned.
    """
    if path is None or not is_local(path) or not spreads_over_workers(task):
        return False
    said: set[str] = task.__dict__.setdefault("_worker_local_warned", set())
    if role in said:
        return False
    said.add(role)
    (log or task.log).warning(
        "Task %s uses a local %s (%s) under %s, which runs tasks on several workers that share no local disk: "
        "another task (or this task's retry) on another worker will not find it; %s",
        getattr(task, "task_id", "?"),
        role,
        os.fspath(path) if not hasattr(path, "protocol") else str(path),
        executor_name(task),
        FIX,
    )
    return True


def warn_if_worker_local_database(task: Any, hook: Any, conn_id: str) -> bool:
    """Warn once per task when a SQLite connection is written under an executor with several workers.

    Each worker then writes its own copy of the database file: runs on different workers each
    hold only their own rows.

    :return: whether it warned.
    """
    if getattr(hook, "conn_type", None) != "sqlite" or not spreads_over_workers(task):
        return False
    task.log.warning(
        "Task %s writes to the SQLite database of connection %r under %s, which runs tasks on several workers: "
        "each worker writes its own copy of the file, so runs on different workers each hold only their own "
        "rows; use a database server (PostgreSQL, MySQL, a warehouse) or a file on a volume every worker mounts",
        getattr(task, "task_id", "?"),
        conn_id,
        executor_name(task),
    )
    return True


def missing_input(path_as_given: str, role: str, task: Any = None) -> FileNotFoundError:
    """The error for an input that is not there, saying where it was looked for and why it may be elsewhere."""
    message = f"{role} {path_as_given} does not exist on this worker ({hostname()})"
    if is_local(path_as_given) and spreads_over_workers(task):
        message += (
            f"; under {executor_name(task)} the task that wrote it may have run on another worker, whose local "
            f"disk this one cannot see: {FIX}"
        )
    return FileNotFoundError(message)
