"""Upload comments (and their labels) from a JSONL or CSV file into a Communications Mining source."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm.exceptions import (
    CommunicationsMiningBadRequestError,
    CommunicationsMiningNotFoundError,
    CommunicationsMiningRejectedRecordsError,
)
from airflow_provider_cm.hooks.communications_mining import (
    MAX_SYNC_COMMENTS,
    split_full_name,
)
from airflow_provider_cm.operators.base import CommunicationsMiningBaseOperator
from airflow_provider_cm.operators.comment_files import (
    CommentRecord,
    detect_format,
    iter_records,
    raise_for_problems,
)
from airflow_provider_cm.operators.storage import atomic_write, to_storage_path

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

#: Problems listed in the error for an invalid file (all are counted).
MAX_PROBLEMS_SHOWN = 20
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class CommunicationsMiningUploadCommentsOperator(CommunicationsMiningBaseOperator):
    """Upload comments from a file to a source, and their labels and entities to a dataset.

    The file is read twice, one record at a time (constant memory): first every record is
    validated, so a bad line fails the task before anything is sent, with an error naming the
    file, line and field of every problem; then the comments are upserted in batches with
    ``POST /api/v1/sources/<project>/<source>/sync``
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/sync-comments)
    and, when ``dataset`` is given, each annotated comment's labels and entities are written with
    ``POST /api/_private/datasets/<project>/<dataset>/labellings/<uid>`` (one comment per request,
    ``annotation_concurrency`` at a time).

    ``sync`` is an upsert by comment id, so rerunning the task is safe: comments already uploaded
    come back as ``unchanged`` and are not billed again. If the API rejects a batch, the batch is
    bisected to find the records it refuses; those go to a dead-letter JSONL file with the server's
    reason and every other record is uploaded. The task then fails (unless ``fail_on_rejected`` is
    false) naming the rejected ids.

    :param source: ``"project/source"`` to upload into. Templated.
    :param input_path: the file: a local path or an ``ObjectStoragePath`` URI such as
        ``s3://bucket/comments.jsonl``. Templated.
    :param dataset: ``"project/dataset"`` to write labels and entities to; it must cover
        ``source``. Without it annotations in the file are ignored. Templated.
    :param input_format: ``"auto"`` (by file name: ``.jsonl``/``.ndjson``/``.json`` or ``.csv``),
        ``"jsonl"`` or ``"csv"``.
    :param csv_columns: for CSV, comment field -> column: ``id``, ``timestamp``, ``text``
        (required), ``subject``, ``from``, ``to``, ``thread_id``, ``labels``, and
        ``user_properties`` as ``{"string:Channel": "channel"}``. Templated.
    :param label_separator: separator between label names in the CSV ``labels`` column.
    :param csv_delimiter: CSV field delimiter.
    :param batch_size: comments per ``sync`` request (1 to 16,384).
    :param max_batch_bytes: approximate bytes per ``sync`` request; a batch is sent early when
        its records' input size reaches it.
    :param annotation_concurrency: annotation requests in flight at once.
    :param sync_concurrency: ``sync`` requests in flight at once (1 with ``allow_duplicate_ids``).
    :param allow_duplicate_ids: accept an id appearing on several lines (the later line updates
        the comment); by default a repeated id is an input error.
    :param dead_letter_path: where rejected records go (JSONL); default beside the input,
        ``<name>.rejected.jsonl``. Written only if something was rejected. Templated.
    :param fail_on_rejected: fail the task at the end if any record was rejected.
    :param dry_run: validate and count only; send nothing. Templated (``"true"``/``"false"`` accepted).
    :param max_comments: refuse to start (before sending anything) if the file holds more
        comments than this, to guard the AI-unit budget. Templated.
    :param communications_mining_conn_id: the Airflow connection.
    :param retry_max_attempts: attempts per API request (default: the connection's, else 5).
    :param retry_max_elapsed: seconds per API request across attempts (default: the connection's, else 300).
    :return: (XCom) ``{"read", "new", "updated", "unchanged", "rejected", "labelled",
        "dead_letter_path", "dry_run"}``; counts are comments.
    :raises CommunicationsMiningInputError: if any record is invalid (nothing is sent).
    :raises AirflowFailException: if the file exceeds ``max_comments``, or the source or dataset
        does not exist, or the dataset does not cover the source.
    :raises CommunicationsMiningRejectedRecordsError: if the API rejected records and
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
        batch_size: int = 1024,
        max_batch_bytes: int = 8 * 1024 * 1024,
        annotation_concurrency: int = 8,
        sync_concurrency: int = 2,
        allow_duplicate_ids: bool = False,
        dead_letter_path: str | None = None,
        fail_on_rejected: bool = True,
        dry_run: bool | str = False,
        max_comments: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= batch_size <= MAX_SYNC_COMMENTS:
            raise ValueError(f"batch_size must be between 1 and {MAX_SYNC_COMMENTS}, got {batch_size}")
        if annotation_concurrency < 1 or sync_concurrency < 1:
            raise ValueError("annotation_concurrency and sync_concurrency must be at least 1")
        self.source = source
        self.input_path = input_path
        self.dataset = dataset
        self.input_format = input_format
        self.csv_columns = csv_columns
        self.label_separator = label_separator
        self.csv_delimiter = csv_delimiter
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.annotation_concurrency = annotation_concurrency
        self.sync_concurrency = sync_concurrency
        self.allow_duplicate_ids = allow_duplicate_ids
        self.dead_letter_path = dead_letter_path
        self.fail_on_rejected = fail_on_rejected
        # Stored as is_dry_run: BaseOperator.dry_run() is a method of its own.
        self.is_dry_run = dry_run
        self.max_comments = max_comments

    @property
    def hook_pool_size(self) -> int:  # type: ignore[override]
        return max(16, self.annotation_concurrency + self.sync_concurrency + 2)

    # -- reading --------------------------------------------------------------------------------

    def _records(self, path: ObjectStoragePath, fmt: str) -> Iterator[CommentRecord | tuple[int, str, str]]:
        with path.open("rb") as handle:
            yield from iter_records(
                handle,
                fmt,
                csv_columns=self.csv_columns,
                label_separator=self.label_separator,
                csv_delimiter=self.csv_delimiter,
            )

    def _validate(self, path: ObjectStoragePath, fmt: str, spool: IO[bytes]) -> tuple[int, int]:
        """Read and check every record, spooling the valid ones; raise listing every invalid record.

        The spool is a local temporary file holding each record normalised and already encoded
        for the request, so the input is read once and nothing is parsed twice.

        :return: ``(comments, comments with annotations)``.
        """
        problems: list[tuple[int, str, str]] = []
        total_problems = 0
        first_line: dict[str, int] = {}
        count = annotated = 0
        for item in self._records(path, fmt):
            if isinstance(item, tuple):
                total_problems += 1
                if len(problems) < MAX_PROBLEMS_SHOWN:
                    problems.append(item)
                continue
            if not self.allow_duplicate_ids:
                seen = first_line.setdefault(item.id, item.line)
                if seen != item.line:
                    total_problems += 1
                    if len(problems) < MAX_PROBLEMS_SHOWN:
                        problems.append((item.line, "comment.id", f"duplicate id {item.id!r} (first on line {seen})"))
                    continue
            count += 1
            annotated += item.has_annotations
            if not total_problems:
                spool.write(SpooledRecord.encode(item))
        raise_for_problems(str(self.input_path), problems, total_problems)
        return count, annotated

    # -- execution ------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        self.is_dry_run = as_bool(self.is_dry_run, "dry_run")
        split_full_name(self.source, "source")
        if self.dataset:
            split_full_name(self.dataset, "dataset")
        path = to_storage_path(self.input_path)
        fmt = detect_format(str(path), self.input_format)
        result: dict[str, Any] = {
            "read": 0,
            "new": 0,
            "updated": 0,
            "unchanged": 0,
            "rejected": 0,
            "labelled": 0,
            "dead_letter_path": None,
            "dry_run": self.is_dry_run,
        }
        with tempfile.TemporaryFile("w+b") as spool:
            self.log.info("Validating %s (%s)", self.input_path, fmt)
            count, annotated = self._validate(path, fmt, spool)
            result["read"] = count
            self.log.info("%s holds %d valid comments, %d with annotations", self.input_path, count, annotated)
            if self.max_comments is not None and count > int(self.max_comments):
                raise AirflowFailException(
                    f"{self.input_path} holds {count} comments, more than max_comments={self.max_comments}; "
                    "nothing was uploaded"
                )
            if self.is_dry_run:
                self.log.info("Dry run: %d comments would be uploaded to %s; nothing was sent", count, self.source)
                return result
            source_id = self._resolve_source_id()
            spool.seek(0)
            upload = _Upload(self, source_id, count, result)
            with tempfile.TemporaryFile("w+", encoding="utf-8") as dead_letters:
                upload.dead_letters = dead_letters
                try:
                    upload.run(SpooledRecord.decode(line) for line in spool)
                finally:
                    if result["rejected"]:
                        result["dead_letter_path"] = self._write_dead_letters(path, dead_letters)
        self.log.info(
            "Uploaded %d comments to %s: %d new (billed), %d updated, %d unchanged, %d rejected; "
            "%d annotated comments written to %s",
            count,
            self.source,
            result["new"],
            result["updated"],
            result["unchanged"],
            result["rejected"],
            result["labelled"],
            self.dataset or "no dataset",
        )
        if result["rejected"] and self.fail_on_rejected:
            context["ti"].xcom_push(key="return_value", value=result)
            raise CommunicationsMiningRejectedRecordsError(
                result["rejected"], result["dead_letter_path"], upload.rejected_ids
            )
        return result

    def _resolve_source_id(self) -> str:
        try:
            source_id = self.hook.get_source(self.source)["id"]
        except CommunicationsMiningNotFoundError:
            raise AirflowFailException(f"source {self.source!r} does not exist") from None
        if self.dataset:
            try:
                dataset = self.hook.get_dataset(self.dataset)
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
        spool.seek(0)
        try:
            with atomic_write(target) as handle:
                shutil.copyfileobj(spool, handle)
        except OSError as exc:
            raise AirflowFailException(
                f"could not write the dead-letter file {target} ({exc}); pass dead_letter_path to choose "
                "a writable place"
            ) from None
        self.log.warning("Rejected records and reasons written to %s", target)
        return str(target)


@dataclass
class SpooledRecord:
    """A validated record as the upload sends it: the comment already JSON-encoded.

    Spool line: ``<line>\t<id>\t<annotations as JSON, or empty>\t<comment as JSON>``; the id is
    JSON-quoted when it holds a tab, newline, backslash or leading quote. JSON text holds no raw
    tab or newline, so the fields split cleanly.
    """

    line: int
    id: str
    comment_json: bytes
    annotations_json: bytes

    @property
    def annotations(self) -> dict[str, Any] | None:
        """Labels, entities and forms to write, or ``None`` (decoded only when needed)."""
        return json.loads(self.annotations_json) if self.annotations_json else None

    @staticmethod
    def encode(record: CommentRecord) -> bytes:
        annotations = ""
        if record.has_annotations:
            values: dict[str, Any] = {}
            if record.labelling is not None and not record.moon_forms:
                values["labelling"] = record.labelling
            if record.entities is not None:
                values["entities"] = record.entities
            if record.moon_forms is not None:
                values["moon_forms"] = record.moon_forms
            annotations = _JSON.encode(values)
        cid = record.id
        if not cid.isprintable() or "\\" in cid or cid.startswith('"'):
            cid = _JSON.encode(cid)  # JSON-quoted only where it must be, to keep tabs and newlines out
        line = f"{record.line}\t{cid}\t{annotations}\t{_JSON.encode(record.comment)}\n"
        return line.encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> SpooledRecord:
        line, cid, annotations, comment = raw.rstrip(b"\n").split(b"\t", 3)
        text_id = json.loads(cid) if cid.startswith(b'"') else cid.decode("utf-8")
        return cls(int(line), text_id, comment, annotations)

    def as_input(self) -> dict[str, Any]:
        """The record in the ``re create comments`` JSONL form, for the dead-letter file."""
        return {"comment": json.loads(self.comment_json), **(self.annotations or {})}


class _Upload:
    """One upload run: batching, bisection of rejected batches, annotations, counts."""

    def __init__(
        self,
        operator: CommunicationsMiningUploadCommentsOperator,
        source_id: str,
        total: int,
        result: dict[str, Any],
    ) -> None:
        self.op = operator
        self.hook = operator.hook
        self.source_id = source_id
        self.total = total
        self.result = result
        self.sent = 0
        self.lock = threading.Lock()
        self.rejected_ids: list[str] = []
        self.dead_letters: Any = None
        self.pool: ThreadPoolExecutor

    def run(self, records: Iterator[SpooledRecord]) -> None:
        """Batch the records and upload them, ``sync_concurrency`` batches at a time.

        Preparing the next batch overlaps sending the current ones; at most ``sync_concurrency + 1``
        batches are held in memory. With ``allow_duplicate_ids`` one batch is sent at a time, in
        file order, so a later line updates an earlier one.
        """
        senders = 1 if self.op.allow_duplicate_ids else self.op.sync_concurrency
        in_flight: deque[Future[None]] = deque()
        with (
            ThreadPoolExecutor(max_workers=self.op.annotation_concurrency) as self.pool,
            ThreadPoolExecutor(max_workers=senders, thread_name_prefix="cm-upload") as sender,
        ):
            try:
                for batch in self._batches(records):
                    in_flight.append(sender.submit(self._flush, batch))
                    while len(in_flight) > senders:
                        in_flight.popleft().result()
                while in_flight:
                    in_flight.popleft().result()
            except BaseException:
                for future in in_flight:
                    future.cancel()
                raise

    def _batches(self, records: Iterator[SpooledRecord]) -> Iterator[list[SpooledRecord]]:
        batch: list[SpooledRecord] = []
        size = 0
        for record in records:
            batch.append(record)
            size += len(record.comment_json) + 1
            if len(batch) >= self.op.batch_size or size >= self.op.max_batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def _flush(self, batch: list[SpooledRecord]) -> None:
        accepted: list[SpooledRecord] = []
        self._sync(batch, accepted)
        if self.op.dataset:
            self._annotate([r for r in accepted if r.annotations_json])
        with self.lock:
            self.sent += len(batch)
            self._log_progress()

    def _log_progress(self) -> None:
        self.op.log.info(
            "Progress: %d of %d comments (%.0f%%): new=%d updated=%d unchanged=%d rejected=%d labelled=%d",
            self.sent,
            self.total,
            100.0 * self.sent / max(self.total, 1),
            self.result["new"],
            self.result["updated"],
            self.result["unchanged"],
            self.result["rejected"],
            self.result["labelled"],
        )

    def _sync(self, records: list[SpooledRecord], accepted: list[SpooledRecord]) -> None:
        try:
            counts = self.hook.sync_comments(self.op.source, [r.comment_json for r in records])
        except CommunicationsMiningBadRequestError as exc:
            if len(records) == 1:
                self._reject(records[0], "sync", exc)
                return
            self.op.log.warning(
                "The API rejected a batch of %d comments (%s); bisecting to find the records it refuses",
                len(records),
                exc.message,
            )
            middle = len(records) // 2
            self._sync(records[:middle], accepted)
            self._sync(records[middle:], accepted)
            return
        with self.lock:
            for key in ("new", "updated", "unchanged"):
                self.result[key] += counts[key]
        accepted.extend(records)

    def _annotate(self, records: list[SpooledRecord]) -> None:
        def write(record: SpooledRecord) -> None:
            self.hook.update_annotations(
                self.op.dataset,  # type: ignore[arg-type]
                f"{self.source_id}.{record.id}",
                **(record.annotations or {}),
            )

        futures = [(record, self.pool.submit(write, record)) for record in records]
        failure: BaseException | None = None
        for record, future in futures:
            error = future.exception()
            if error is None:
                with self.lock:
                    self.result["labelled"] += 1
            elif isinstance(error, CommunicationsMiningBadRequestError | CommunicationsMiningNotFoundError):
                self._reject(record, "annotations", error)
            elif failure is None:
                failure = error
        if failure is not None:
            raise failure

    def _reject(self, record: SpooledRecord, stage: str, error: Any) -> None:
        with self.lock:
            self._record_rejection(record, stage, error)

    def _record_rejection(self, record: SpooledRecord, stage: str, error: Any) -> None:
        self.result["rejected"] += 1
        self.rejected_ids.append(record.id)
        self.op.log.warning("Rejected comment %r (line %d) at %s: %s", record.id, record.line, stage, error.message)
        entry = {
            "line": record.line,
            "id": record.id,
            "stage": stage,
            "status_code": error.status_code,
            "error": error.message,
            "record": record.as_input(),
        }
        self.dead_letters.write(json.dumps(entry, ensure_ascii=False) + "\n")


def as_bool(value: Any, name: str) -> bool:
    """A templated flag as a bool: ``True``/``False`` or the strings ``"true"``/``"false"`` (any case).

    :raises ValueError: for anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{name} must be true or false, got {value!r}")
