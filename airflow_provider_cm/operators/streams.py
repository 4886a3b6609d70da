"""Stream operators: fetch results durably, advance after downstream success, reset, tag exceptions.

At-least-once delivery: fetch with ``advance=False``, load the file downstream, then advance with
:class:`CommunicationsMiningStreamAdvanceOperator` to the fetched ``sequence_id``. A failure
anywhere before the advance means the next run fetches the same comments again; the stream is
never moved past a comment that was not delivered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm.api.times import api_time
from airflow_provider_cm.client.user_times import to_utc
from airflow_provider_cm.common import lineage
from airflow_provider_cm.common.drain.ledger import DrainLedger
from airflow_provider_cm.common.drain.output import DrainOutput
from airflow_provider_cm.common.storage import atomic_write, path_as_given, to_storage_path
from airflow_provider_cm.common.workers import warn_if_worker_local
from airflow_provider_cm.hooks.communications_mining import MAX_STREAM_FETCH, split_full_name
from airflow_provider_cm.operators.base import CommunicationsMiningBaseOperator
from airflow_provider_cm.pipelines.stream_drain import DrainWriter, StreamBatch, StreamDrain

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context, ObjectStoragePath


class _StreamOperator(CommunicationsMiningBaseOperator):
    """What every stream operator shares: the dataset and the stream (plus the connection and retries)."""

    def __init__(self, *, dataset: str, stream: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.stream = stream

    def _check_names(self) -> None:
        split_full_name(self.dataset, "dataset")
        if not self.stream:
            raise ValueError("stream must be a stream name")


def stream_result_row(result: Mapping[str, Any], thresholds: Mapping[str, float] | None) -> dict[str, Any]:
    """One fetched result as a JSON line: uid, comment, labels (``"A > B"`` names), entities, sequence id.

    With ``thresholds``, only the labels named there, at or above their threshold, are kept.
    """
    labels = list(result.get("labels") or [])
    if thresholds is not None:
        labels = [label for label in labels if label["probability"] >= thresholds.get(label["name"], 2.0)]
    comment = result.get("comment") or {}
    return {
        "uid": comment.get("uid"),
        "comment": comment,
        "labels": labels,
        "entities": result.get("entities") or [],
        "sequence_id": result.get("sequence_id"),
    }


class CommunicationsMiningStreamFetchOperator(_StreamOperator):
    """Fetch a stream's new results into a JSONL file, and optionally acknowledge them.

    Calls ``POST /api/v1/datasets/<project>/<dataset>/streams/<stream>/fetch``
    (https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/fetch-comments-from-a-stream-legacy.md)
    and, to skip comments the stream's filter drops or with ``advance=True``, ``.../advance``.

    Fetching never moves a stream, so a stream shows the same batch until it is advanced:

    * ``advance=False`` (the default, for at-least-once pipelines): one batch of up to
      ``batch_size`` results is written; batches holding only filtered comments are skipped
      (advancing past them loses nothing). Advance downstream, after the results are safe, to
      the returned ``sequence_id``.
    * ``advance=True``: batches are fetched until the stream is caught up or ``max_results`` is
      reached; each batch is written durably (appended and flushed to disk) before the stream is
      advanced past it, so a crash at any point loses nothing, and the complete file appears at
      ``output_path`` at the end (see :mod:`~airflow_provider_cm.common.drain.output`: a
      local spool ``.<name>.drain`` beside it; an object store target is rewritten per batch).
      What an earlier try of the same task wrote (its spool or its finished file) is kept and
      extended, so template the path per run (``{{ run_id }}``).

    **A retry on another worker** (CeleryExecutor, KubernetesExecutor: no shared disk) cannot see
    the local spool of the try before it. So each try records, before every advance, what it
    acknowledged (its host and spool, the ``created_at`` of its first acknowledged comment, the
    sequence ids, the count) in Airflow's task state store (Airflow 3.3+) or an Airflow Variable
    (3.2; see :mod:`~airflow_provider_cm.common.drain.ledger`). A try that finds fewer results
    on its disk than the earlier tries acknowledged never succeeds with them missing: with
    ``on_lost_output="redeliver"`` (the default) it resets the stream to the first comment the
    earlier tries acknowledged (``POST .../streams/<stream>/reset``, only backwards: never past
    unread results) and drains again from there, at least once, with the results delivered again
    counted in ``redelivered`` and logged; with ``"fail"``, or when the reset cannot be done
    safely, it fails naming the host and spool where those results are. An object-store target
    needs none of this: every try writes where the next can read.

    Each line: ``{"uid", "comment", "labels": [{"name": "Parent > Child", "probability"}],
    "entities", "sequence_id"}``.

    :param dataset: ``"project/dataset"``. Templated.
    :param stream: the stream's name. Templated.
    :param output_path: local path or ``ObjectStoragePath`` URI, written atomically. Templated.
    :param max_results: most results to write (comments).
    :param batch_size: comments per fetch, 1 to 1,024.
    :param advance: acknowledge what was written (see above).
    :param label_thresholds: stricter thresholds ``{"Parent > Child": 0.6}``: only these labels,
        at or above them, are kept on each result.
    :param on_lost_output: ``"redeliver"`` or ``"fail"``: what a draining try does when earlier
        tries acknowledged results its worker's disk does not hold (see above).
    :return: (XCom) ``{"path", "count", "sequence_id", "advanced", "caught_up", "redelivered"}``;
        ``sequence_id`` is the position to advance to (``None`` if there is nothing to
        acknowledge); ``redelivered`` the results an earlier try acknowledged that were fetched
        again after the stream was reset (0 unless a retry lost the earlier output).
    :raises AirflowFailException: with ``on_lost_output="fail"`` (or when the stream cannot be
        reset safely) and earlier tries' results are not on this worker.
    """

    template_fields: Sequence[str] = ("dataset", "stream", "output_path", "label_thresholds")
    returns_mapping = True

    def __init__(
        self,
        *,
        output_path: str,
        max_results: int = 10_000,
        batch_size: int = MAX_STREAM_FETCH,
        advance: bool = False,
        label_thresholds: Mapping[str, float] | None = None,
        on_lost_output: str = "redeliver",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= batch_size <= MAX_STREAM_FETCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_STREAM_FETCH}, got {batch_size}")
        if max_results < 1:
            raise ValueError("max_results must be at least 1")
        if on_lost_output not in ("redeliver", "fail"):
            raise ValueError(f"on_lost_output must be 'redeliver' or 'fail', got {on_lost_output!r}")
        self.on_lost_output = on_lost_output
        self.output_path = output_path
        self.max_results = max_results
        self.batch_size = batch_size
        self.advance = advance
        self.label_thresholds = label_thresholds

    @lineage.records_result
    def execute(self, context: Context) -> dict[str, Any]:
        self._check_names()
        target = to_storage_path(self.output_path)
        warn_if_worker_local(self, target, "output_path")
        redelivered = 0
        if self.advance:
            written, caught_up, redelivered = self._drain(target, context)
            pending = None
        else:
            lines, pending, caught_up = self._fetch_one_batch(target)
            written = len(lines)
        self.log.info(
            "Wrote %d stream results to %s; %s%s",
            written,
            target,
            "advanced the stream past them" if self.advance else f"advance to {pending} once they are safe",
            f" ({redelivered} of them delivered again: an earlier try's output was not on this worker)"
            if redelivered
            else "",
        )
        return {
            "path": path_as_given(self.output_path),
            "count": written,
            "sequence_id": pending,
            "advanced": bool(self.advance),
            "caught_up": caught_up,
            "redelivered": redelivered,
        }

    def _stream_drain(self) -> StreamDrain:
        return StreamDrain(self.hook, self.dataset, self.stream, batch_size=self.batch_size, log=self.log)

    def _fetch_one_batch(self, target: Any) -> tuple[list[str], str | None, bool]:
        """``advance=False``: write the next batch; return its lines, its sequence id and whether it ends the stream."""
        batch = self._stream_drain().next_batch(min(self.batch_size, self.max_results))
        lines = self._lines(batch)
        self._write(target, lines)
        if not lines:
            return lines, None, True
        return lines, batch["sequence_id"], bool(batch["is_end_sequence"])

    def _drain(self, target: ObjectStoragePath, context: Context) -> tuple[int, bool, int]:
        """``advance=True``: write and acknowledge batch after batch; return the results written, caught up,
        and the results delivered again after a reset."""
        output = DrainOutput(target)
        ledger = DrainLedger(context, str(output.spool)) if output.local else None
        try:
            written = output.open()
            redelivered = self._recover(output, ledger, written) if ledger is not None else 0
            if output.count:
                self.log.info("Keeping the %d results an earlier try wrote for %s", output.count, target)
            caught_up = self._drain_into(output, output.count, ledger)
            if ledger is not None:
                ledger.clear()
        finally:
            output.close()
        return output.count, caught_up, redelivered

    def _recover(self, output: DrainOutput, ledger: DrainLedger, kept: int) -> int:
        """When earlier tries acknowledged more than this worker's disk holds: reset and redeliver, or fail."""
        acknowledged, in_flight = ledger.acknowledged()
        if kept >= acknowledged + in_flight:
            return 0
        tries = ledger.tries()
        where = "; ".join(
            f"{t.get('acknowledged')} (+{t.get('in_flight')}) results in {t.get('spool')} on host {t.get('host')}"
            for t in tries
        )
        lost = (
            f"earlier tries of this task acknowledged {acknowledged} results of stream {self.stream} of "
            f"{self.dataset}, and up to {in_flight} more whose advance was under way when a try stopped "
            f"(recorded in {ledger.where}: {where}); this worker ({ledger.host}) holds {kept} in {output.spool}"
        )
        starts = [t.get("first_created_at") for t in tries]
        if self.on_lost_output == "fail":
            raise AirflowFailException(f"{lost}; on_lost_output='fail': collect them from there")
        if not all(isinstance(s, str) and s for s in starts):
            raise AirflowFailException(
                f"{lost}; their first comment's created_at is unknown, so the stream cannot be reset"
            )
        start = api_time(min(to_utc(s, "created_at") for s in starts))
        head = self.hook.fetch_stream(self.dataset, self.stream, size=1)["results"]
        if head and to_utc(head[0]["comment"].get("created_at") or start, "created_at") < to_utc(start, "start"):
            raise AirflowFailException(f"{lost}; resetting the stream to {start} would skip unread results")
        self.log.warning("%s: resetting the stream to %s and delivering them again", lost, start)
        self.hook.reset_stream(self.dataset, self.stream, start)
        output.restart()
        ledger.restart()
        return acknowledged

    def _drain_into(self, output: DrainOutput, written: int, ledger: DrainLedger | None = None) -> bool:
        """Drain into ``output`` (which holds ``written`` results already) up to ``max_results``;
        return whether the stream was caught up. The file is placed even when empty: it says
        "nothing new" to downstream tasks."""
        writer = _FileWriter(output, ledger, self._lines)
        drained = self._stream_drain().drain(writer, max_results=self.max_results - written)
        output.finish()
        return drained.caught_up

    def _lines(self, batch: StreamBatch) -> list[str]:
        thresholds = dict(self.label_thresholds) if self.label_thresholds else None
        return [json.dumps(stream_result_row(r, thresholds), ensure_ascii=False) for r in batch["results"]]

    @staticmethod
    def _write(target: Any, lines: list[str]) -> None:
        handle: IO[str]
        with atomic_write(target) as handle:
            handle.write("".join(line + "\n" for line in lines))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the stream read; the file written, with the results it holds.

        Names as in :mod:`airflow_provider_cm.common.lineage`; called by the OpenLineage listener.
        """
        written = lineage.count(lineage.task_result(self), "count")
        return lineage.operator_lineage(
            inputs=[lineage.stream_dataset(self.hook, self.dataset, self.stream)],
            outputs=[lineage.written(lineage.file_dataset(to_storage_path(self.output_path)), written)],
        )


class _FileWriter(DrainWriter):
    """A draining fetch's batches into its output, each durable before the stream moves past it; with a
    ledger, what each advance acknowledges recorded where every worker can read it, before the advance."""

    def __init__(
        self, output: DrainOutput, ledger: DrainLedger | None, lines: Callable[[StreamBatch], list[str]]
    ) -> None:
        self.output = output
        self.ledger = ledger
        self.lines = lines
        self.first_created_at: str | None = None

    def write(self, batch: StreamBatch) -> None:
        self.output.append(self.lines(batch))

    def advancing(self, batch: StreamBatch) -> None:
        if self.ledger is not None:
            self.first_created_at = self.first_created_at or batch["results"][0]["comment"].get("created_at")
            self.ledger.advancing(
                first_created_at=self.first_created_at, sequence_id=batch["sequence_id"], results=len(batch["results"])
            )

    def advanced(self, batch: StreamBatch) -> None:
        if self.ledger is not None:
            self.ledger.advanced()


class CommunicationsMiningStreamAdvanceOperator(_StreamOperator):
    """Acknowledge a stream's results up to a ``sequence_id`` (``POST .../streams/<stream>/advance``).

    Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/advance-a-stream

    Advancing twice to the same ``sequence_id`` is harmless, so the task can be retried.

    :param sequence_id: usually ``"{{ ti.xcom_pull(task_ids='fetch')['sequence_id'] }}"``. Empty or
        ``None`` (nothing was fetched) does nothing. Templated.
    :return: (XCom) the sequence id advanced to, or ``None``.
    """

    template_fields: Sequence[str] = ("dataset", "stream", "sequence_id")

    def __init__(self, *, sequence_id: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sequence_id = sequence_id

    def execute(self, context: Context) -> str | None:
        self._check_names()
        if self.sequence_id in (None, "", "None"):
            self.log.info("Nothing to acknowledge on stream %s of %s", self.stream, self.dataset)
            return None
        self.hook.advance_stream(self.dataset, self.stream, str(self.sequence_id))
        self.log.info("Advanced stream %s of %s to %s", self.stream, self.dataset, self.sequence_id)
        return str(self.sequence_id)


class CommunicationsMiningStreamResetOperator(_StreamOperator):
    """Move a stream to the first comment uploaded at or after a time (``POST .../streams/<stream>/reset``).

    Docs: https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/reset-a-stream.md

    Moving back replays comments. Moving forward past results nobody has read would drop them,
    so it is refused unless ``allow_skipping_unread=True``.

    :param to_comment_created_at: datetime or ISO-8601 time (compared with comments' upload
        time, ``created_at``). Templated.
    :param allow_skipping_unread: allow moving past unread results.
    :return: (XCom) ``{"sequence_id", "to_comment_created_at"}``.
    :raises AirflowFailException: when the reset would skip unread results and that is not allowed.
    """

    template_fields: Sequence[str] = ("dataset", "stream", "to_comment_created_at")
    returns_mapping = True

    def __init__(
        self, *, to_comment_created_at: datetime | str, allow_skipping_unread: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.to_comment_created_at = to_comment_created_at
        self.allow_skipping_unread = allow_skipping_unread

    def execute(self, context: Context) -> dict[str, Any]:
        self._check_names()
        target = api_time(to_utc(self.to_comment_created_at, "to_comment_created_at"))
        if not self.allow_skipping_unread:
            batch = self.hook.fetch_stream(self.dataset, self.stream, size=1)
            unread = [r["comment"] for r in batch["results"]]
            if unread and unread[0].get("created_at", "") < target:
                raise AirflowFailException(
                    f"resetting stream {self.stream} of {self.dataset} to {target} would skip unread results "
                    f"(the next one, {unread[0].get('uid')}, was uploaded at {unread[0].get('created_at')}); "
                    "pass allow_skipping_unread=True to do it anyway"
                )
        response = self.hook.reset_stream(self.dataset, self.stream, target)
        self.log.info("Reset stream %s of %s to %s", self.stream, self.dataset, target)
        return {"sequence_id": response.get("sequence_id"), "to_comment_created_at": target}


class CommunicationsMiningTagExceptionsOperator(_StreamOperator):
    """Tag comments as exceptions of a stream, e.g. the ones a downstream system refused.

    Calls ``PUT .../streams/<stream>/exceptions``
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/tag-an-exception).

    :param uids: comment uids (``"<source_id>.<comment_id>"``); a list, or a template rendering
        to one (``render_template_as_native_obj``) or to its JSON. Empty does nothing. Templated.
    :param exception_type: a short text naming the problem, e.g. ``"Rejected by warehouse"``. Templated.
    :return: (XCom) the number of comments tagged.
    """

    template_fields: Sequence[str] = ("dataset", "stream", "uids", "exception_type")

    def __init__(self, *, uids: Sequence[str] | str, exception_type: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.uids = uids
        self.exception_type = exception_type

    @lineage.records_result
    def execute(self, context: Context) -> int:
        self._check_names()
        uids = self.uids
        if isinstance(uids, str):
            uids = json.loads(uids) if uids.strip() not in ("", "None") else []
        if not isinstance(uids, (list, tuple)) or not all(isinstance(u, str) for u in uids):
            raise ValueError(f"uids must be a list of comment uids, got {self.uids!r}")
        if not uids:
            self.log.info("No exceptions to tag")
            return 0
        for start in range(0, len(uids), 1024):
            self.hook.tag_exceptions(self.dataset, self.stream, uids[start : start + 1024], self.exception_type)
        self.log.info("Tagged %d comments as %r exceptions on stream %s", len(uids), self.exception_type, self.stream)
        return len(uids)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the stream written (its exceptions), with the comments tagged; nothing when none were.

        Names as in :mod:`airflow_provider_cm.common.lineage`; called by the OpenLineage listener.
        """
        tagged = lineage.task_result(self)
        if not isinstance(tagged, int) or isinstance(tagged, bool) or tagged < 1:
            return lineage.operator_lineage([], [])
        stream = lineage.stream_dataset(self.hook, self.dataset, self.stream)
        return lineage.operator_lineage([], [lineage.written(stream, tagged)])
