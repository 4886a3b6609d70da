"""Model operators: resolve a model tag to its pinned version (a drift gate), predict on new messages."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm import lineage
from airflow_provider_cm.exceptions import CommunicationsMiningModelDriftError, CommunicationsMiningTagError
from airflow_provider_cm.hooks.communications_mining import MAX_PREDICT_DOCUMENTS, split_full_name
from airflow_provider_cm.labels import label_name
from airflow_provider_cm.operators.base import CommunicationsMiningBaseOperator
from airflow_provider_cm.storage import atomic_write, path_as_given, to_storage_path
from airflow_provider_cm.upload.comment_validation import RecordError, validate_comment
from airflow_provider_cm.workers import missing_input, warn_if_worker_local

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
    """Predict labels for messages read from a file, with a pinned model version or a tag.

    Calls ``POST /api/v1/datasets/<project>/<dataset>/labellers/<version>/predict``
    (https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/predictions.md), which is
    **billed per document**: use it for messages that are not in the platform (streams deliver
    predictions for uploaded ones at no extra charge).

    :param dataset: ``"project/dataset"``. Templated.
    :param version: a version number (e.g. from :class:`CommunicationsMiningModelTagOperator`'s
        XCom), or ``"live"`` / ``"staging"``. Templated.
    :param input_path: JSONL of comments, either bare comment objects or ``{"comment": {...}}``
        lines. Templated.
    :param output_path: JSONL with one ``{"id", "labels": [{"name", "probability"}], "entities"}``
        line per input line, written atomically. Templated.
    :param threshold: 0 to 1, or ``"auto"``; default the API's (0.25).
    :param batch_size: documents per request, 1 to 4,096.
    :param max_documents: refuse to start above this many documents (AI-unit budget guard).
    :return: (XCom) ``{"path", "count", "version"}``.
    """

    template_fields: Sequence[str] = ("dataset", "version", "input_path", "output_path")
    returns_mapping = True

    def __init__(
        self,
        *,
        dataset: str,
        version: int | str,
        input_path: str,
        output_path: str,
        threshold: float | str | None = None,
        batch_size: int = 1024,
        max_documents: int | None = 10_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= batch_size <= MAX_PREDICT_DOCUMENTS:
            raise ValueError(f"batch_size must be between 1 and {MAX_PREDICT_DOCUMENTS}, got {batch_size}")
        self.dataset = dataset
        self.version = version
        self.input_path = input_path
        self.output_path = output_path
        self.threshold = threshold
        self.batch_size = batch_size
        self.max_documents = max_documents

    def _documents(self) -> list[tuple[int, dict[str, Any]]]:
        documents = []
        source = to_storage_path(self.input_path)
        warn_if_worker_local(self, source, "input_path")
        try:
            opened = source.open("r", encoding="utf-8")
        except FileNotFoundError:
            raise missing_input(path_as_given(self.input_path), "input_path", self) from None
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

    @lineage.records_result
    def execute(self, context: Context) -> dict[str, Any]:
        split_full_name(self.dataset, "dataset")
        documents = self._documents()
        if self.max_documents is not None and len(documents) > self.max_documents:
            raise AirflowFailException(
                f"{self.input_path} holds {len(documents)} documents, more than max_documents={self.max_documents}; "
                "predictions are billed per document, nothing was sent"
            )
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
            "Predicted %d documents with model %s of %s into %s", len(documents), version, self.dataset, target
        )
        return {"path": path_as_given(self.output_path), "count": len(documents), "version": version}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the messages file and the dataset (its model made the labels) read; the predictions file
        written, with the documents predicted.

        Names as in :mod:`airflow_provider_cm.lineage`; called by the OpenLineage listener.
        """
        written = lineage.count(lineage.task_result(self), "count")
        messages = lineage.file_dataset(to_storage_path(self.input_path))
        return lineage.operator_lineage(
            inputs=[messages, lineage.cm_dataset(self.hook, self.dataset)],
            outputs=[lineage.written(lineage.file_dataset(to_storage_path(self.output_path)), written)],
        )
