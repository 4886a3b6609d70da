"""Model operators: resolve a model tag to its pinned version (a drift gate), predict on new messages."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm.api.labels import label_name
from airflow_provider_cm.common import lineage
from airflow_provider_cm.common.storage import atomic_write, path_as_given, shown_under, to_storage_path
from airflow_provider_cm.common.workers import missing_input, warn_if_worker_local
from airflow_provider_cm.exceptions import CommunicationsMiningModelDriftError, CommunicationsMiningTagError
from airflow_provider_cm.hooks.communications_mining import MAX_PREDICT_DOCUMENTS, split_full_name
from airflow_provider_cm.operators.base import CommunicationsMiningBaseOperator
from airflow_provider_cm.pipelines.comments.comment_validation import RecordError, validate_comment
from airflow_provider_cm.pipelines.emails import (
    DEFAULT_TRANSFORM_TAG,
    EmailProblem,
    document_problems,
    email_files,
    iter_emails,
)

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context


class CommunicationsMiningModelTagOperator(CommunicationsMiningBaseOperator):
    """Return the pinned model version behind a tag, and optionally fail if it moved.

    Reads ``GET /api/v1/datasets/<project>/<dataset>/model-tags`` (needs the "Model Admin"
    permission; documented by the legacy Re:infer API docs, https://developers.reinfer.io/api/reference/datasets).

    :param dataset: ``"project/dataset"``. Templated.
    :param tag: ``"live"`` or ``"staging"``. Templated.
    :param expected_version: the version the DAG was validated against; if the tag points
        elsewhere the task fails (a model-drift gate). Templated.
    :return: (XCom) the version number.
    :raises CommunicationsMiningModelDriftError: the tag points to another version than expected.
    :raises AirflowFailException: the tag or dataset does not exist.
    """

    template_fields: Sequence[str] = ("dataset", "tag", "expected_version")

    def __init__(
        self,
        *,
        dataset: str,
        tag: str = "live",
        expected_version: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.tag = tag
        self.expected_version = expected_version

    def execute(self, context: Context) -> int:
        split_full_name(self.dataset, "dataset")
        try:
            version = self.hook.resolve_model_tag(self.dataset, self.tag)
        except CommunicationsMiningTagError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("Model tag %r of %s points to version %d", self.tag, self.dataset, version)
        if self.expected_version not in (None, "", "None"):
            expected = int(self.expected_version)  # type: ignore[arg-type]
            if version != expected:
                raise CommunicationsMiningModelDriftError(self.dataset, self.tag, expected, version)
        return version


class CommunicationsMiningPredictOperator(CommunicationsMiningBaseOperator):
    """Predict labels for messages read from a file, or for e-mails, with a pinned model version or a tag.

    Comments (``input_path``) go to ``POST /api/v1/datasets/<project>/<dataset>/labellers/<version>/predict``
    (https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/predictions.md); e-mails
    (``emails_path``: ``.eml``, ``.msg`` or mbox files, or a folder of them, read as
    :class:`~airflow_provider_cm.operators.emails.CommunicationsMiningUploadEmailsOperator` reads
    them) to ``POST .../labellers/<version>/predict-raw-emails``. Both are **billed per document**
    (per e-mail): use them for messages that are not in the platform (streams deliver predictions
    for uploaded ones at no extra charge). Every input is read and checked before anything is sent.

    :param dataset: ``"project/dataset"``. Templated.
    :param version: a version number (e.g. from :class:`CommunicationsMiningModelTagOperator`'s
        XCom), or ``"live"`` / ``"staging"``. Templated.
    :param input_path: JSONL of comments, either bare comment objects or ``{"comment": {...}}``
        lines. Templated. Give this or ``emails_path``.
    :param emails_path: a local path or ``ObjectStoragePath`` URI of one ``.eml``/``.msg``/``.mbox``
        file or a folder or prefix of them (recursively, in path order). An input that is not an
        e-mail or breaks the API's limits fails the task before anything is sent. Templated.
    :param transform_tag: with ``emails_path``, the e-mail integration's tag (default the official
        CLI's ``generic.0.CONVKER5``).
    :param output_path: JSONL with one ``{"id", "labels": [{"name", "probability"}], "entities"}``
        line per input line (per e-mail, with ``"file"`` and ``"index"`` too, ``id`` its comment
        id), written atomically. Templated.
    :param threshold: 0 to 1, or ``"auto"``; default the API's (0.25).
    :param batch_size: documents per request, 1 to 4,096.
    :param max_documents: refuse to start above this many documents (AI-unit budget guard).
    :return: (XCom) ``{"path", "count", "version", "billed"}``; ``billed`` is the documents sent,
        each billed once.
    :raises AirflowFailException: for an invalid input, more than ``max_documents`` documents.
    """

    template_fields: Sequence[str] = ("dataset", "version", "input_path", "emails_path", "output_path")
    returns_mapping = True

    def __init__(
        self,
        *,
        dataset: str,
        version: int | str,
        output_path: str,
        input_path: str | None = None,
        emails_path: str | None = None,
        transform_tag: str = DEFAULT_TRANSFORM_TAG,
        threshold: float | str | None = None,
        batch_size: int = 1024,
        max_documents: int | None = 10_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (input_path is None) == (emails_path is None):
            raise ValueError("give input_path (comments) or emails_path (e-mails), and only one of them")
        if not 1 <= batch_size <= MAX_PREDICT_DOCUMENTS:
            raise ValueError(f"batch_size must be between 1 and {MAX_PREDICT_DOCUMENTS}, got {batch_size}")
        self.dataset = dataset
        self.version = version
        self.input_path = input_path
        self.emails_path = emails_path
        self.transform_tag = transform_tag
        self.output_path = output_path
        self.threshold = threshold
        self.batch_size = batch_size
        self.max_documents = max_documents

    def _documents(self) -> list[tuple[int, dict[str, Any]]]:
        documents = []
        source = to_storage_path(str(self.input_path))
        warn_if_worker_local(self, source, "input_path")
        try:
            opened = source.open("r", encoding="utf-8")
        except FileNotFoundError:
            raise missing_input(path_as_given(str(self.input_path)), "input_path", self) from None
        with opened as handle:
            for line_number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    comment = obj.get("comment", obj) if isinstance(obj, Mapping) else obj
                    if not isinstance(comment, Mapping):
                        raise RecordError("(line)", "must be a comment object")
                    # Documents need no id or timestamp: check the rest with placeholders.
                    validate_comment({"id": str(line_number), "timestamp": "1970-01-01T00:00:00Z", **comment})
                    documents.append((line_number, dict(comment)))
                except json.JSONDecodeError as exc:
                    raise AirflowFailException(f"{self.input_path}:{line_number}: not valid JSON: {exc.msg}") from None
                except RecordError as exc:
                    raise AirflowFailException(f"{self.input_path}:{line_number}: {exc.field}: {exc.message}") from None
        return documents

    def _emails(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """``(where, document)`` of every e-mail; raise listing the inputs that cannot be predicted."""
        root = to_storage_path(str(self.emails_path))
        warn_if_worker_local(self, root, "emails_path")
        try:
            files = email_files(root)
        except FileNotFoundError:
            raise missing_input(path_as_given(str(self.emails_path)), "emails_path", self) from None
        emails: list[tuple[dict[str, Any], dict[str, Any]]] = []
        problems: list[str] = []
        for item in iter_emails(files, shown=shown_under(root, path_as_given(str(self.emails_path)))):
            if isinstance(item, EmailProblem):
                place = item.file if item.index is None else f"{item.file}#{item.index}"
                problems.append(f"{place}: {item.reason}")
                continue
            found = document_problems(item.email.document)
            if found:
                problems.append(f"{item.file}#{item.index}: {found[0][0]}: {found[0][1]}")
                continue
            where = {"id": item.email.comment_id, "file": item.file, "index": item.index}
            emails.append((where, item.email.document))
        if problems:
            shown = "\n  ".join(problems[:20]) + (
                f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            )
            raise AirflowFailException(
                f"{len(problems)} input(s) under {self.emails_path} cannot be predicted; nothing was sent:\n  {shown}"
            )
        return emails

    @lineage.records_result
    def execute(self, context: Context) -> dict[str, Any]:
        split_full_name(self.dataset, "dataset")
        if self.emails_path is not None:
            return self._predict_emails()
        documents = self._documents()
        self._check_budget(len(documents), self.input_path)
        version = self.version
        target = to_storage_path(self.output_path)
        warn_if_worker_local(self, target, "output_path")
        with atomic_write(target) as handle:
            for start in range(0, len(documents), self.batch_size):
                chunk = documents[start : start + self.batch_size]
                predictions = self.hook.predict(
                    self.dataset, version, [document for _, document in chunk], threshold=self.threshold
                )
                for (_, document), prediction in zip(chunk, predictions, strict=True):
                    labels = [dict(label, name=label_name(label["name"])) for label in prediction.get("labels", [])]
                    row = {"id": document.get("id"), "labels": labels, "entities": prediction.get("entities", [])}
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.log.info(
            "Predicted %d documents with model %s of %s into %s (%d billed)",
            len(documents),
            version,
            self.dataset,
            target,
            len(documents),
        )
        return {
            "path": path_as_given(self.output_path),
            "count": len(documents),
            "version": version,
            "billed": len(documents),
        }

    def _check_budget(self, count: int, path: str | None) -> None:
        if self.max_documents is not None and count > self.max_documents:
            raise AirflowFailException(
                f"{path} holds {count} documents, more than max_documents={self.max_documents}; "
                "predictions are billed per document, nothing was sent"
            )

    def _predict_emails(self) -> dict[str, Any]:
        """Predict every e-mail with ``predict-raw-emails``, in batches; one output line per e-mail."""
        emails = self._emails()
        self._check_budget(len(emails), self.emails_path)
        target = to_storage_path(self.output_path)
        warn_if_worker_local(self, target, "output_path")
        billed = 0
        with atomic_write(target) as handle:
            for start in range(0, len(emails), self.batch_size):
                chunk = emails[start : start + self.batch_size]
                predictions = self.hook.predict_raw_emails(
                    self.dataset,
                    self.version,
                    [document for _, document in chunk],
                    transform_tag=self.transform_tag,
                    threshold=self.threshold,
                )
                billed += len(chunk)
                for (where, _), prediction in zip(chunk, predictions, strict=True):
                    labels = [dict(label, name=label_name(label["name"])) for label in prediction.get("labels", [])]
                    row = {**where, "labels": labels, "entities": prediction.get("entities", [])}
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.log.info("Predicted %d of %d e-mails (%d billed)", billed, len(emails), billed)
        self.log.info(
            "Predicted %d e-mails with model %s of %s into %s (%d billed, one per e-mail)",
            len(emails),
            self.version,
            self.dataset,
            target,
            billed,
        )
        return {
            "path": path_as_given(self.output_path),
            "count": len(emails),
            "version": self.version,
            "billed": billed,
        }

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the messages file and the dataset (its model made the labels) read; the predictions file
        written, with the documents predicted.

        Names as in :mod:`airflow_provider_cm.common.lineage`; called by the OpenLineage listener.
        """
        written = lineage.count(lineage.task_result(self), "count")
        messages = lineage.file_dataset(to_storage_path(self.emails_path or self.input_path or ""))
        return lineage.operator_lineage(
            inputs=[messages, lineage.cm_dataset(self.hook, self.dataset)],
            outputs=[lineage.written(lineage.file_dataset(to_storage_path(self.output_path)), written)],
        )
