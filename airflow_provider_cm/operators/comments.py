"""Upload comments (and their labels) from a JSONL or CSV file into a Communications Mining source."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timezone as dt_timezone
from datetime import tzinfo
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm.client.flags import as_bool
from airflow_provider_cm.common import lineage
from airflow_provider_cm.common.storage import atomic_write, path_as_given, to_storage_path
from airflow_provider_cm.common.workers import missing_input, warn_if_worker_local
from airflow_provider_cm.exceptions import (
    CommunicationsMiningNotFoundError,
    CommunicationsMiningRejectedRecordsError,
)
from airflow_provider_cm.hooks.communications_mining import (
    MAX_SYNC_COMMENTS,
    split_full_name,
)
from airflow_provider_cm.operators.base import CommunicationsMiningBaseOperator
from airflow_provider_cm.pipelines.comments.comment_files import (
    DEFAULT_CSV_COLUMNS,
    CommentRecord,
    CsvColumns,
    CsvColumnsError,
    detect_format,
    iter_records,
)
from airflow_provider_cm.pipelines.comments.comment_validation import TimestampRule
from airflow_provider_cm.pipelines.comments.engine import UploadEngine, UploadSettings, annotation_limits
from airflow_provider_cm.pipelines.comments.file_check import check_and_spool
from airflow_provider_cm.pipelines.comments.spool import SpooledRecord
from airflow_provider_cm.pipelines.comments.upload_tally import (
    DEPRECATED_XCOM_KEYS,
    UploadTally,
    say_deprecated_xcom_keys,
)

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context, ObjectStoragePath


class CommunicationsMiningUploadCommentsOperator(CommunicationsMiningBaseOperator):
    """Upload comments from a file to a source, and their labels and entities to a dataset.

    The file is read once, one record at a time (constant memory): every record is checked
    against the API's rules (RFC 3339 timestamps, ids a URL path can carry, the documented limits
    and types, label names in the ``"Parent > Child"`` form, numbers JSON can carry), so a bad
    line fails the task before anything is sent or billed, with an error naming the file, line and
    field of every problem. The valid records go to a local spool; then the comments are upserted
    in batches with ``POST /api/v1/sources/<project>/<source>/sync``
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/sync-comments)
    and, when ``dataset`` is given, each annotated comment's labels and entities are written with
    ``POST /api/_private/datasets/<project>/<dataset>/labellings/<uid>`` (one comment per request,
    many in flight: see ``max_annotation_concurrency``).

    Annotation writes send only what changed: for each batch of stored comments the dataset's current
    annotations are read in bulk (``GET .../labellings?id=<uid>&id=<uid>...``, a few dozen uids per
    request) and a comment is written only if a kind its record carries (labels, entities, field
    extractions) differs from what the dataset holds (see
    :mod:`~airflow_provider_cm.pipelines.comments.annotation_changes`); the others are counted as
    ``annotations_unchanged``. A batch whose comments ``sync`` all created is not read: it has nothing yet.

    ``sync`` is an upsert by comment id, so rerunning the task is safe: comments already uploaded
    come back as ``unchanged`` and are not billed again. If the API refuses a batch, the batch is
    bisected to find the records it refuses; those go to a dead-letter JSONL file with the
    server's reason (``"stored": false``) and every other record is uploaded. A comment that was
    stored but whose labels the API refused goes there too, with ``"stored": true``. The task then
    fails (unless ``fail_on_rejected`` is false) naming the ids.

    Billed comments (created, or updated with a changed text) are reported exactly when they can
    be known, else as a range with the reasons: see :mod:`~airflow_provider_cm.pipelines.comments.upload_tally`.

    :param source: ``"project/source"`` to upload into. Templated.
    :param input_path: the file: a local path or an ``ObjectStoragePath`` URI such as
        ``s3://bucket/comments.jsonl``. Templated.
    :param dataset: ``"project/dataset"`` to write labels and entities to; it must cover
        ``source``. Without it annotations in the file are ignored. Templated.
    :param input_format: ``"auto"`` (by file name: ``.jsonl``/``.ndjson``/``.json`` or ``.csv``),
        ``"jsonl"`` or ``"csv"``.
    :param csv_columns: for CSV, comment field -> column: ``id``, ``timestamp``, ``text``
        (required), ``subject``, ``from``, ``to``, ``thread_id``, ``labels``, and
        ``user_properties`` as ``{"string:Channel": "channel"}``. Checked once before the file is
        read. Templated.
    :param label_separator: separator between label names in the CSV ``labels`` column.
    :param csv_delimiter: CSV field delimiter.
    :param timezone: the time zone of timestamps written without a UTC offset
        (``2026-10-01T12:00:00``): ``"UTC"`` (default) or an IANA name such as ``"Europe/London"``
        (a local time that does not exist or happens twice there is an error); ``None`` refuses
        such timestamps. How many were read this way is logged once. Templated.
    :param batch_size: comments per ``sync`` request (1 to 16,384).
    :param max_batch_bytes: approximate bytes per ``sync`` request; a batch is sent early when
        its records' encoded size reaches it.
    :param annotation_concurrency: label-write requests in flight at the start (default 32, the
        official CLI's threads). Given alone, it is also the most (the behaviour before the limit adapted).
    :param max_annotation_concurrency: the most label-write requests in flight (default 128, or
        ``annotation_concurrency`` when only that is given). Between 1 and this, the number in
        flight adapts (AIMD, :class:`~airflow_provider_cm.client.concurrency.AdaptiveConcurrency`):
        it grows by 2 while each round trip serves more than the last at a lower limit (throughput
        follows the limit: latency stays flat) and the tenant answers no 429 or 503, and halves when
        it does. The most reached is logged. A batch's label writes start as soon as its ``sync``
        succeeded, while the next batches are sent, and only for the comments it stored. After a 429
        every request (``sync`` too) is paced below the rate the tenant was found to serve
        (:class:`~airflow_provider_cm.client.pacing.RatePacer`); the last log line says the refusals
        met and the pace settled at.
    :param sync_concurrency: ``sync`` requests in flight at once (1 with ``allow_duplicate_ids``).
    :param allow_duplicate_ids: accept an id appearing on several lines (the later line updates
        the comment); by default a repeated id is an input error.
    :param dead_letter_path: where rejected records go (JSONL); default beside the input,
        ``<name>.rejected.jsonl``. Written only if something was rejected. Templated.
    :param fail_on_rejected: fail the task at the end if any record was rejected or any label
        write refused.
    :param fail_on_empty: fail the task when the file holds no comment (empty, blank lines only,
        or a CSV header only); by default that is a warning and zero counts.
    :param dry_run: validate and count only; send nothing. Templated (``"true"``/``"false"`` accepted).
    :param max_comments: refuse to start (before sending anything) if the file holds more
        comments than this, to guard the AI-unit budget. Templated.
    :param deprecated_xcom_keys: also put 0.1's XCom key names in the return value (default
        ``True`` until 0.3, which removes them); ``False`` leaves them out, and the task log's
        line about them with them.
    :param communications_mining_conn_id: the Airflow connection.
    :param retry_max_attempts: attempts per API request (default: the connection's, else 5).
    :param retry_max_elapsed: seconds per API request across attempts (default: the connection's, else 300).
    :return: (XCom) ``{"read", "new", "updated", "unchanged", "rejected", "annotated",
        "annotations_unchanged", "annotations_rejected", "billed", "dead_letter_path", "dry_run"}``;
        counts are comments; ``annotated`` counts the comments whose annotations were written,
        ``annotations_unchanged`` those the dataset already held as the file gives them,
        ``annotations_rejected`` those the API refused; ``billed`` is
        ``{"at_least": int, "at_most": int, "exact": bool, "why": [str]}``. The deprecated keys
        ``labelled``, ``labels_unchanged`` and ``labels_rejected`` (0.1's names) carry the same
        values until 0.3, unless ``deprecated_xcom_keys=False``; while they are there, the task log
        says so once per run (a warning cannot be raised where a downstream task pulls them: XCom
        hands it a plain dict).
    :raises CommunicationsMiningInputError: if any record is invalid (nothing is sent).
    :raises CommunicationsMiningInputChangedError: if the file changed while it was read (written
        to, replaced or cut short): nothing is sent, and a retry reads it again.
    :raises AirflowFailException: if ``csv_columns`` or ``timezone`` cannot work, the file exceeds
        ``max_comments`` or is empty with ``fail_on_empty``, or the source or dataset does not
        exist, or the dataset does not cover the source.
    :raises CommunicationsMiningRejectedRecordsError: if the API rejected records or labels and
        ``fail_on_rejected`` is true.
    """

    template_fields: Sequence[str] = (
        "source",
        "input_path",
        "dataset",
        "csv_columns",
        "dead_letter_path",
        "max_comments",
        "is_dry_run",
        "timezone",
    )
    template_fields_renderers = {"csv_columns": "json"}

    def __init__(
        self,
        *,
        source: str,
        input_path: str,
        dataset: str | None = None,
        input_format: str = "auto",
        csv_columns: Mapping[str, Any] | None = None,
        label_separator: str = ";",
        csv_delimiter: str = ",",
        timezone: str | tzinfo | None = "UTC",
        batch_size: int = 1024,
        max_batch_bytes: int = 8 * 1024 * 1024,
        annotation_concurrency: int | None = None,
        max_annotation_concurrency: int | None = None,
        sync_concurrency: int = 2,
        allow_duplicate_ids: bool = False,
        dead_letter_path: str | None = None,
        fail_on_rejected: bool = True,
        fail_on_empty: bool = False,
        dry_run: bool | str = False,
        max_comments: int | None = None,
        deprecated_xcom_keys: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= batch_size <= MAX_SYNC_COMMENTS:
            raise ValueError(f"batch_size must be between 1 and {MAX_SYNC_COMMENTS}, got {batch_size}")
        if sync_concurrency < 1:
            raise ValueError("sync_concurrency must be at least 1")
        start, most = annotation_limits(annotation_concurrency, max_annotation_concurrency)
        self.source = source
        self.input_path = input_path
        self.dataset = dataset
        self.input_format = input_format
        self.csv_columns = csv_columns
        self.label_separator = label_separator
        self.csv_delimiter = csv_delimiter
        self.timezone = timezone
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.annotation_concurrency = start
        self.max_annotation_concurrency = most
        self.sync_concurrency = sync_concurrency
        self.allow_duplicate_ids = allow_duplicate_ids
        self.dead_letter_path = dead_letter_path
        self.fail_on_rejected = fail_on_rejected
        self.fail_on_empty = fail_on_empty
        # Stored as is_dry_run: BaseOperator.dry_run() is a method of its own.
        self.is_dry_run = dry_run
        self.max_comments = max_comments
        self.deprecated_xcom_keys = deprecated_xcom_keys

    @property
    def hook_pool_size(self) -> int:  # type: ignore[override]
        return max(16, self.max_annotation_concurrency + self.sync_concurrency + 2)

    # -- execution ------------------------------------------------------------------------------

    @lineage.records_result
    def execute(self, context: Context) -> dict[str, Any]:
        self._deprecated_keys_said = False
        plan = self._plan()
        result: dict[str, Any] = {
            "read": 0,
            **UploadTally().as_xcom(),
            "dead_letter_path": None,
            "dry_run": self.is_dry_run,
        }
        with tempfile.TemporaryFile("w+b") as spool:
            result["read"] = count = self._validate(plan, spool)
            if not count:
                return self._pushing(self._nothing_to_upload(result))
            if self.max_comments is not None and count > int(self.max_comments):
                raise AirflowFailException(
                    f"{self.input_path} holds {count} comments, more than max_comments={self.max_comments}; "
                    "nothing was uploaded"
                )
            if self.is_dry_run:
                self.log.info("Dry run: %d comments would be uploaded to %s; nothing was sent", count, self.source)
                return self._pushing(result)
            upload = self._engine(self._resolve_source_id(), count)
            spool.seek(0)
            result["dead_letter_path"] = self._run(upload, spool, plan.path, context, result)
        result.update(upload.tally.as_xcom())
        self._log_outcome(count, upload.tally, upload.pacing_text())
        if (upload.tally.rejected or upload.tally.annotations_rejected) and self.fail_on_rejected:
            context["ti"].xcom_push(key="return_value", value=self._pushing(result))
            raise CommunicationsMiningRejectedRecordsError(
                result["dead_letter_path"], upload.refused_ids, upload.unannotated_ids
            )
        return self._pushing(result)

    def _pushing(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result``, about to be pushed to XCom: without 0.1's keys if ``deprecated_xcom_keys`` is off,
        else with them and the task log's line, once per run, that they are deprecated."""
        if not getattr(self, "deprecated_xcom_keys", True):
            return {key: value for key, value in result.items() if key not in DEPRECATED_XCOM_KEYS}
        if not getattr(self, "_deprecated_keys_said", False):
            self._deprecated_keys_said = True
            say_deprecated_xcom_keys(self.log)
        return result

    def _plan(self) -> _Plan:
        """Check the parameters once, before the file is read."""
        self.is_dry_run = as_bool(self.is_dry_run, "dry_run")
        split_full_name(self.source, "source")
        if self.dataset:
            split_full_name(self.dataset, "dataset")
        path = to_storage_path(self.input_path)
        fmt = detect_format(str(path), self.input_format)
        columns = None
        if fmt == "csv":
            try:
                columns = CsvColumns.from_mapping(self.csv_columns or DEFAULT_CSV_COLUMNS)
            except CsvColumnsError as exc:
                raise AirflowFailException(f"{exc}; nothing was read or sent") from None
        return _Plan(path, fmt, columns, TimestampRule(naive_zone(self.timezone)))

    def _open(self, plan: _Plan) -> IO[bytes]:
        warn_if_worker_local(self, plan.path, "input_path")
        try:
            return plan.path.open("rb")  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise missing_input(path_as_given(self.input_path), "input_path", self) from None

    def _records(self, plan: _Plan, handle: IO[bytes]) -> Iterator[CommentRecord | tuple[int, str, str]]:
        return iter_records(
            handle,
            plan.fmt,
            csv_columns=plan.columns,
            label_separator=self.label_separator,
            csv_delimiter=self.csv_delimiter,
            timestamps=plan.timestamps,
        )

    def _validate(self, plan: _Plan, spool: IO[bytes]) -> int:
        """Check every record, spooling the valid ones
        (:func:`~airflow_provider_cm.pipelines.comments.file_check.check_and_spool`).

        :return: the number of comments.
        :raises CommunicationsMiningInputError: listing the problems, if there are any.
        :raises CommunicationsMiningInputChangedError: if the file changed while it was read.
        """
        self.log.info("Validating %s (%s)", self.input_path, plan.fmt)
        checked = check_and_spool(
            lambda: self._open(plan),
            lambda handle: self._records(plan, handle),
            spool,
            where=str(self.input_path),
            timestamps=plan.timestamps,
            allow_duplicate_ids=self.allow_duplicate_ids,
        )
        if plan.timestamps.naive:
            self.log.info(
                "%d timestamps had no UTC offset and were read in %s (the timezone parameter)",
                plan.timestamps.naive,
                plan.timestamps.zone,
            )
        self.log.info(
            "%s holds %d valid comments, %d with annotations", self.input_path, checked.count, checked.annotated
        )
        if checked.audio:
            self.log.warning(
                "%d records name an audio_path (a recording the official CLI uploads with the comment): their "
                "comments and annotations are uploaded, their recordings are not",
                checked.audio,
            )
        return checked.count

    def _engine(self, source_id: str, total: int) -> UploadEngine:
        settings = UploadSettings(
            source=self.source,
            dataset=self.dataset,
            batch_size=self.batch_size,
            max_batch_bytes=self.max_batch_bytes,
            sync_concurrency=self.sync_concurrency,
            annotation_concurrency=self.annotation_concurrency,
            max_annotation_concurrency=self.max_annotation_concurrency,
            allow_duplicate_ids=self.allow_duplicate_ids,
        )
        return UploadEngine(self.hook, settings, self.log, source_id=source_id, total=total)

    def _nothing_to_upload(self, result: dict[str, Any]) -> dict[str, Any]:
        message = f"{self.input_path} holds no comments (it is empty, blank or a CSV header only); nothing was sent"
        if self.fail_on_empty:
            raise AirflowFailException(message)
        self.log.warning("%s (pass fail_on_empty=True to fail instead)", message)
        return result

    def _run(
        self,
        upload: UploadEngine,
        spool: IO[bytes],
        input_path: ObjectStoragePath,
        context: Context,
        result: dict[str, Any],
    ) -> str | None:
        """Send the spooled records; return the dead-letter file's path if anything was rejected.

        If the upload stops on an error, what was done and billed so far is logged and pushed to
        XCom before the error propagates.
        """
        with tempfile.TemporaryFile("w+", encoding="utf-8") as dead_letters:
            upload.dead_letters.file = dead_letters
            stopped = True
            try:
                upload.run(SpooledRecord.decode(line) for line in spool)
                stopped = False
            finally:
                path = self._write_dead_letters(input_path, dead_letters) if upload.dead_lettered else None
                if stopped:
                    self._report_stop(upload, context, {**result, "dead_letter_path": path})
        return path

    def _report_stop(self, upload: UploadEngine, context: Context, result: dict[str, Any]) -> None:
        self.log.error(
            "The upload stopped after %d of %d comments: %s; its requests %s",
            upload.tally.done,
            upload.total,
            upload.tally.summary(),
            upload.pacing_text(),
        )
        self._log_billing_range(upload.tally)
        if context.get("ti") is not None:
            context["ti"].xcom_push(key="return_value", value=self._pushing({**result, **upload.tally.as_xcom()}))

    def _log_outcome(self, count: int, tally: UploadTally, pacing: str) -> None:
        self.log.info(
            "Uploaded %d comments to %s: %d stored (%d new, %d updated, %d unchanged), %d rejected; "
            "%d with annotations written to %s, %d whose annotations were already there, %d whose annotations "
            "were refused; %s; its requests %s",
            count,
            self.source,
            tally.stored,
            tally.new,
            tally.updated,
            tally.unchanged,
            tally.rejected,
            tally.annotated,
            self.dataset or "no dataset",
            tally.annotations_unchanged,
            tally.annotations_rejected,
            tally.billed_text(),
            pacing,
        )
        self._log_billing_range(tally)

    def _log_billing_range(self, tally: UploadTally) -> None:
        for reason in tally.why:
            self.log.info("Billed comments are a range because %s", reason)

    def _resolve_source_id(self) -> str:
        # The dataset is read while the source is (one round trip before the first batch, not two); the hook's
        # session is made first, here, not by both threads at once.
        self.hook.get_conn()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cm-upload-dataset") as pool:
            reading = pool.submit(self.hook.get_dataset, self.dataset) if self.dataset else None
            try:
                source_id = self.hook.get_source(self.source)["id"]
            except CommunicationsMiningNotFoundError:
                raise AirflowFailException(f"source {self.source!r} does not exist") from None
            if reading is None:
                return source_id
            try:
                dataset = reading.result()
            except CommunicationsMiningNotFoundError:
                raise AirflowFailException(f"dataset {self.dataset!r} does not exist") from None
            if source_id not in dataset.get("source_ids", []):
                raise AirflowFailException(
                    f"dataset {self.dataset!r} does not cover source {self.source!r}; add the source to "
                    "the dataset before uploading labels"
                )
        return source_id

    def _write_dead_letters(self, input_path: ObjectStoragePath, spool: IO[str]) -> str:
        if self.dead_letter_path:
            target = to_storage_path(self.dead_letter_path)
        else:
            stem = input_path.name.rsplit(".", 1)[0] if "." in input_path.name else input_path.name
            target = input_path.parent / f"{stem}.rejected.jsonl"
        warn_if_worker_local(self, target, "dead-letter file")
        spool.seek(0)
        try:
            with atomic_write(target) as handle:
                shutil.copyfileobj(spool, handle)
        except OSError as exc:
            raise AirflowFailException(
                f"could not write the dead-letter file {target} ({exc}); pass dead_letter_path to choose "
                "a writable place"
            ) from None
        shown = path_as_given(self.dead_letter_path or str(self.input_path), target)
        self.log.warning("Rejected records and reasons written to %s", shown)
        return shown

    # -- lineage --------------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the file read; the source and, with ``dataset``, the dataset written, and the dead-letter file.

        Output statistics: the comments the source stored in this run (new, updated and unchanged)
        and the comments whose labels the dataset took. A dry run writes nothing, so it reports
        the file only. Names as in :mod:`airflow_provider_cm.common.lineage`; called by the OpenLineage listener.
        """
        result = lineage.task_result(self)
        inputs = [lineage.file_dataset(to_storage_path(self.input_path))]
        if as_bool(result.get("dry_run") if isinstance(result, Mapping) else self.is_dry_run, "dry_run"):
            return lineage.operator_lineage(inputs, [])
        stored = lineage.count(result, "new", "updated", "unchanged")
        outputs = [lineage.written(lineage.source_dataset(self.hook, self.source), stored)]
        if self.dataset:
            annotated = lineage.count(result, "annotated")
            outputs.append(lineage.written(lineage.cm_dataset(self.hook, self.dataset), annotated))
        dead_letter_path = result.get("dead_letter_path") if isinstance(result, Mapping) else None
        if dead_letter_path:
            lines = lineage.count(result, "rejected", "annotations_rejected")
            outputs.append(lineage.written(lineage.file_dataset(to_storage_path(dead_letter_path)), lines))
        return lineage.operator_lineage(inputs, outputs)


@dataclass
class _Plan:
    """What one run reads: the file, its format, the checked CSV map and the timestamp rule."""

    path: ObjectStoragePath
    fmt: str
    columns: CsvColumns | None
    timestamps: TimestampRule


def naive_zone(value: str | tzinfo | None) -> tzinfo | None:
    """The zone for timestamps without an offset, from the ``timezone`` parameter.

    :raises AirflowFailException: for a name that is not a time zone.
    """
    if value is None or isinstance(value, tzinfo):
        return value
    if value.strip().upper() in ("UTC", "Z"):
        return dt_timezone.utc
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise AirflowFailException(
            f"timezone {value!r} is not a time zone name such as 'UTC' or 'Europe/London'"
        ) from None
