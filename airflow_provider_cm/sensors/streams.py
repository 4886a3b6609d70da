"""A sensor that waits for new results in a Communications Mining stream."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, conf
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, AirflowSkipException

from airflow_provider_cm.hooks.communications_mining import MAX_STREAM_FETCH, CommunicationsMiningHook, split_full_name
from airflow_provider_cm.triggers.streams import CommunicationsMiningStreamTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class CommunicationsMiningStreamSensor(BaseSensorOperator):
    """Wait until at least ``min_results`` new results wait in a stream; never advances it.

    Each poke fetches the next ``batch_size`` comments of the stream
    (``POST .../streams/<stream>/fetch``, which does not move it) and counts the results the
    stream's filter keeps.

    Modes: ``poke`` (holds a worker slot), ``reschedule`` (frees it between pokes) and
    ``deferrable=True``, where :class:`CommunicationsMiningStreamTrigger` polls in the triggerer
    (which must be running) without holding a worker slot. ``deferrable`` defaults to
    ``[operators] default_deferrable``. ``timeout`` (seconds from the first poke) and
    ``soft_fail`` behave as for every Airflow sensor, in all three modes.

    :param dataset: ``"project/dataset"``. Templated.
    :param stream: the stream's name. Templated.
    :param min_results: results to wait for, 1 to ``batch_size``.
    :param batch_size: comments looked at per poke, 1 to 1,024.
    :param retry_max_attempts: attempts per API request (default: the connection's, else 5).
    :param retry_max_elapsed: seconds per API request across attempts (default: the connection's, else 300).
    :return: (XCom) the number of results found.
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
        communications_mining_conn_id: str = CommunicationsMiningHook.default_conn_name,
        retry_max_attempts: int | None = None,
        retry_max_elapsed: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.retry_max_attempts = retry_max_attempts
        self.retry_max_elapsed = retry_max_elapsed
        if not 1 <= batch_size <= MAX_STREAM_FETCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_STREAM_FETCH}, got {batch_size}")
        if not 1 <= min_results <= batch_size:
            raise ValueError(f"min_results must be between 1 and batch_size ({batch_size}), got {min_results}")
        self.dataset = dataset
        self.stream = stream
        self.min_results = min_results
        self.batch_size = batch_size
        self.deferrable = deferrable
        self.communications_mining_conn_id = communications_mining_conn_id
        self._found = 0

    @cached_property
    def hook(self) -> CommunicationsMiningHook:
        return CommunicationsMiningHook(
            self.communications_mining_conn_id,
            retry_max_attempts=self.retry_max_attempts,
            retry_max_elapsed=self.retry_max_elapsed,
        )

    def poke(self, context: Context) -> bool:
        split_full_name(self.dataset, "dataset")
        batch = self.hook.fetch_stream(self.dataset, self.stream, size=self.batch_size)
        self._found = len(batch["results"])
        self.log.info(
            "%d of %d results wait in stream %s of %s", self._found, self.min_results, self.stream, self.dataset
        )
        return self._found >= self.min_results

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
                communications_mining_conn_id=self.communications_mining_conn_id,
                retry_max_attempts=self.retry_max_attempts,
                retry_max_elapsed=self.retry_max_elapsed,
            ),
            method_name="execute_complete",
            # The trigger ends itself at the deadline; this is only a backstop.
            timeout=timedelta(seconds=float(self.timeout) + 60) if self.timeout is not None else None,
        )
        return 0  # not reached: defer() raises

    def execute_complete(self, context: Context, event: dict[str, Any]) -> int:
        status = event.get("status")
        if status == "success":
            self.log.info("%s results wait in stream %s of %s", event.get("results"), self.stream, self.dataset)
            return int(event.get("results", 0))
        if status == "timeout":
            message = (
                f"stream {self.stream} of {self.dataset} had {event.get('results', 0)} of {self.min_results} "
                f"results when the sensor timed out"
            )
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        raise AirflowException(f"waiting for stream {self.stream} of {self.dataset} failed: {event.get('message')}")
