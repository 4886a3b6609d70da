"""A sensor that waits for new results in a Communications Mining stream."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, conf
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from airflow_provider_cm.exceptions import CommunicationsMiningError
from airflow_provider_cm.hooks.communications_mining import MAX_STREAM_FETCH, split_full_name
from airflow_provider_cm.operators.base import CommunicationsMiningHookMixin
from airflow_provider_cm.triggers.streams import CommunicationsMiningStreamTrigger, describe_count

if TYPE_CHECKING:
    from airflow.sdk import Context


class CommunicationsMiningStreamSensor(CommunicationsMiningHookMixin, BaseSensorOperator):
    """Wait until at least ``min_results`` new results wait in a stream; never advances it.

    Each poke fetches the next ``batch_size`` comments of the stream
    (``POST /api/v1/datasets/<project>/<dataset>/streams/<stream>/fetch``, which does not move it;
    https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/fetch-comments-from-a-stream-legacy.md)
    and counts the results the stream's filter keeps.

    Modes: ``poke`` (holds a worker slot), ``reschedule`` (frees it between pokes) and
    ``deferrable=True``, where :class:`CommunicationsMiningStreamTrigger` polls in the triggerer
    (which must be running) without holding a worker slot. ``deferrable`` defaults to
    ``[operators] default_deferrable``.

    Outcomes, the same in every mode: success when enough results wait; on ``timeout`` (seconds
    from the first poke) the task fails with :class:`AirflowSensorTimeout`, or is skipped when
    ``soft_fail=True``; an API error that the retry policy could not mend (stream or dataset
    deleted, token revoked, host unreachable) **fails** the task, also with ``soft_fail=True``:
    ``soft_fail`` is for "nothing arrived in time", never for "could not look".

    :param dataset: ``"project/dataset"``. Templated.
    :param stream: the stream's name. Templated.
    :param min_results: results to wait for, 1 to ``batch_size``.
    :param batch_size: comments looked at per poke, 1 to 1,024.
    :param communications_mining_conn_id: the Airflow connection.
    :param retry_max_attempts: attempts per API request (default: the connection's, else 5).
    :param retry_max_elapsed: seconds per API request across attempts (default: the connection's, else 300).
    :return: (XCom) the number of results seen in the last fetch; more may wait beyond a full batch.
    """

    template_fields: Sequence[str] = ("dataset", "stream")
    ui_color = "#fa4616"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        dataset: str,
        stream: str,
        min_results: int = 1,
        batch_size: int = 256,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= batch_size <= MAX_STREAM_FETCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_STREAM_FETCH}, got {batch_size}")
        if not 1 <= min_results <= batch_size:
            raise ValueError(f"min_results must be between 1 and batch_size ({batch_size}), got {min_results}")
        self.dataset = dataset
        self.stream = stream
        self.min_results = min_results
        self.batch_size = batch_size
        self.deferrable = deferrable
        self._found = 0

    def poke(self, context: Context) -> bool:
        split_full_name(self.dataset, "dataset")
        batch = self.hook.fetch_stream(self.dataset, self.stream, size=self.batch_size)
        self._found = len(batch["results"])
        self._log_waiting(self._found, batch["is_end_sequence"])
        return self._found >= self.min_results

    def _log_waiting(self, results: int, end_of_stream: bool) -> None:
        self.log.info(
            "%s results wait in stream %s of %s (%d wanted)",
            describe_count(results, end_of_stream),
            self.stream,
            self.dataset,
            self.min_results,
        )

    def execute(self, context: Context) -> int:
        if not self.deferrable:
            super().execute(context)
            return self._found
        if self.poke(context):
            return self._found
        deadline = time.time() + float(self.timeout) if self.timeout is not None else None
        self.defer(
            trigger=CommunicationsMiningStreamTrigger(
                dataset=self.dataset,
                stream=self.stream,
                min_results=self.min_results,
                batch_size=self.batch_size,
                poll_interval=float(self.poke_interval),
                deadline=deadline,
                hook_params=self.hook_params,
            ),
            method_name="execute_complete",
            # The trigger ends itself at the deadline; this is only a backstop.
            timeout=timedelta(seconds=float(self.timeout) + 60) if self.timeout is not None else None,
        )
        return 0  # not reached: defer() raises

    def execute_complete(self, context: Context, event: dict[str, Any]) -> int:
        """Take the trigger's event: success, a timeout (skip with ``soft_fail``) or an API error (fail)."""
        status = event.get("status")
        results = int(event.get("results") or 0)
        if status == "success":
            self._log_waiting(results, bool(event.get("end_of_stream", True)))
            return results
        if status == "timeout":
            waiting = describe_count(results, bool(event.get("end_of_stream")))
            raise AirflowSensorTimeout(
                f"stream {self.stream} of {self.dataset} had {waiting} of {self.min_results} results "
                "when the sensor timed out"
            )
        raise CommunicationsMiningError(
            f"waiting for stream {self.stream} of {self.dataset} failed: {event.get('message') or event}"
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Resume after the trigger, keeping ``soft_fail`` to its meaning: a timeout is skipped, an error fails.

        Airflow's sensor turns any exception raised on resuming into a skip when ``soft_fail`` is
        set; that would make a deleted stream or a revoked token a green run. Only a timeout stays
        a skip here (``never_fail`` keeps its meaning of skipping on any error).
        """
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSkipException as skip:
            cause = skip.__cause__
            if self.never_fail or cause is None or isinstance(cause, AirflowSensorTimeout):
                raise
            raise cause from None
