"""What each try of a draining stream fetch acknowledged, kept where every worker can read it.

A drain to a local path keeps its batches in a spool on the worker's disk. A retry that runs on
another worker (CeleryExecutor, KubernetesExecutor) cannot see that spool, so without a record it
would drain the rest and succeed with the acknowledged results missing. Before each advance, the
try records here: its host, its spool, the ``created_at`` of the first comment it acknowledged,
the sequence ids of its first and latest batches, the results it is acknowledging (``in_flight``)
and, once the advance returned, the results it has acknowledged. A retry compares that with what
it finds on its own disk (see
:class:`~airflow_provider_cm.operators.streams.CommunicationsMiningStreamFetchOperator`).

The record is kept in Airflow's **task state store** (``context["task_state_store"]``, Airflow
3.3+), scoped to the task instance across its tries. Airflow 3.2 has none, and a task's XComs are
cleared when each try starts, so there it is kept in an Airflow **Variable** named
``communications_mining_drain/<dag_id>/<run_id>/<task_id>/<map_index>``. Either is removed when
the task succeeds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_provider_cm.common.workers import hostname

#: The task state store key of the record.
STATE_KEY = "communications_mining_drain"


class DrainLedger:
    """The record of one task instance's drain tries: :meth:`tries` reads it; :meth:`advancing` and
    :meth:`advanced` write this try's.

    :param context: the task's context (its ``task_state_store``, else its ``ti`` for the Variable's name).
    :param spool: where this try keeps its batches (named in the record for a later try's error).
    """

    def __init__(self, context: Mapping[str, Any], spool: str) -> None:
        self._store = context.get("task_state_store")
        ti: Any = context.get("ti")
        self._variable: str | None = None
        if self._store is None and all(hasattr(ti, name) for name in ("dag_id", "run_id", "task_id")):
            map_index = getattr(ti, "map_index", -1)
            self._variable = (
                f"{STATE_KEY}/{ti.dag_id}/{ti.run_id}/{ti.task_id}/{-1 if map_index is None else map_index}"
            )
        self.host = hostname()
        self.spool = spool
        self._earlier: list[dict[str, Any]] | None = None
        self._mine: dict[str, Any] | None = None

    @property
    def available(self) -> bool:
        """Whether there is anywhere to keep the record (not for an ``execute()`` called by hand)."""
        return self._store is not None or self._variable is not None

    @property
    def where(self) -> str:
        if self._store is not None:
            return f"the task state store (key {STATE_KEY!r})"
        return f"the Airflow Variable {self._variable!r}"

    def tries(self) -> list[dict[str, Any]]:
        """What earlier tries recorded, oldest first (``[]`` when none acknowledged anything)."""
        if self._earlier is None:
            value = self._read()
            tries = value.get("tries") if isinstance(value, dict) else None
            self._earlier = [dict(t) for t in tries if isinstance(t, dict)] if isinstance(tries, list) else []
        return list(self._earlier)

    def acknowledged(self) -> tuple[int, int]:
        """Results the earlier tries acknowledged, together, and those whose advance was under way when they stopped
        (acknowledged or not: the try did not live to know)."""
        tries = self.tries()
        return sum(int(t.get("acknowledged") or 0) for t in tries), sum(int(t.get("in_flight") or 0) for t in tries)

    def advancing(self, *, first_created_at: str | None, sequence_id: str, results: int) -> None:
        """Record, before the stream is advanced to ``sequence_id``, the ``results`` that advance acknowledges."""
        if not self.available:
            return
        if self._mine is None:
            self._mine = {
                "host": self.host,
                "spool": self.spool,
                "first_created_at": first_created_at,
                "first_sequence_id": sequence_id,
                "acknowledged": 0,
            }
        self._mine.update(last_sequence_id=sequence_id, in_flight=results)
        self._write({"tries": [*self.tries(), self._mine]})

    def advanced(self) -> None:
        """Record that the advance recorded by :meth:`advancing` returned."""
        if not self.available or self._mine is None:
            return
        self._mine.update(acknowledged=self._mine["acknowledged"] + self._mine["in_flight"], in_flight=0)
        self._write({"tries": [*self.tries(), self._mine]})

    def restart(self) -> None:
        """Forget the earlier tries: their results are being delivered again by this one."""
        self._earlier = []
        if self._mine is not None:
            self._write({"tries": [self._mine]})

    def clear(self) -> None:
        """Remove the record (the task is about to succeed: every result is in its file)."""
        if not self.available or (self._mine is None and not self.tries()):
            return
        if self._store is not None:
            self._store.delete(STATE_KEY)
        elif self._variable is not None:
            from airflow.sdk import Variable

            Variable.delete(self._variable)

    def _read(self) -> Any:
        if self._store is not None:
            return self._store.get(STATE_KEY)
        if self._variable is None:
            return None
        from airflow.sdk import Variable

        text = Variable.get(self._variable, default=None)
        return json.loads(text) if text else None

    def _write(self, value: dict[str, Any]) -> None:
        if self._store is not None:
            self._store.set(STATE_KEY, value)
        elif self._variable is not None:
            from airflow.sdk import Variable

            Variable.set(self._variable, json.dumps(value), description="airflow-provider-cm: a stream drain's tries")
