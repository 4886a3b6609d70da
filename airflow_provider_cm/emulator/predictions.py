"""Pinned model versions, model tags and predictions in the emulator.

Assumptions where the public docs are silent (see the API reference, sections 3.8-3.9):

* ``GET /api/v1/datasets/<p>/<d>/model-tags`` answers
  ``{"status": "ok", "model_tags": [{"name": "live", "version": 3, "updated_at": "..."}]}``.
* ``POST .../labellers/<version>/predict`` answers
  ``{"status": "ok", "predictions": [{"labels": [{"name": ["Parent", "Child"], "probability": 0.91,
  "auto_thresholds"?: [...]}], "entities": []}]}``, one entry per document, in order.
* Versions are pinned (and tagged) through the emulator-only route
  ``POST /_emulator/datasets/<p>/<d>/models`` ``{"tag": "live"}``; a version is trained on the
  dataset's assigned labels at that moment and never changes afterwards.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_cm.emulator.model import AUTO_THRESHOLDS, NaiveBayesModel, comment_text
from airflow_provider_cm.emulator.state import ApiError, Dataset, EmulatorState, bad_request, format_time, now_utc

MAX_PREDICT_DOCUMENTS = 4096
DEFAULT_PREDICT_THRESHOLD = 0.25
#: Without thresholds, labels below this probability are left out of stream results.
MIN_REPORTED_PROBABILITY = 0.01
TAGS = ("live", "staging")


def train_version(state: EmulatorState, dataset: Dataset, tag: str | None = None) -> dict[str, Any]:
    """Train a classifier on the dataset's assigned leaf labels, pin it as the next version, tag it."""
    examples = []
    for uid, annotation in dataset.annotations.items():
        source_id, _, comment_id = uid.partition(".")
        source = state.sources.get(source_id)
        comment = source.comments.get(comment_id) if source else None
        if comment is None or source_id not in dataset.source_ids:
            continue
        names = [label["name"] for group in annotation.get("labelling", []) for label in group.get("assigned", [])]
        if names:
            examples.append((comment_text(comment), names))
    if not examples:
        raise bad_request(f"dataset '{dataset.project}/{dataset.name}' has no assigned labels to train on")
    version = max(dataset.models, default=0) + 1
    dataset.models[version] = {
        "version": version,
        "trained_time": format_time(now_utc()),
        "trained_on": len(examples),
        "model": NaiveBayesModel.train(examples),
    }
    if tag:
        set_tag(dataset, tag, version)
    state._mutated()
    return {"version": version, "trained_on": len(examples), "tag": tag}


def set_tag(dataset: Dataset, tag: str, version: int) -> None:
    if tag not in TAGS:
        raise bad_request(f"tag must be one of {', '.join(TAGS)}")
    if version not in dataset.models:
        raise bad_request(f"model version {version} is not pinned")
    dataset.model_tags[tag] = {"version": version, "updated_at": format_time(now_utc())}


def model_tags(dataset: Dataset) -> list[dict[str, Any]]:
    return [{"name": tag, **value} for tag, value in sorted(dataset.model_tags.items())]


def resolve_version(dataset: Dataset, version: Any) -> int:
    """A pinned version number from a number, a numeric string, ``live`` or ``staging``."""
    if isinstance(version, str) and version in TAGS:
        if version not in dataset.model_tags:
            raise ApiError(404, f"no model is tagged '{version}'")
        return int(dataset.model_tags[version]["version"])
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise bad_request(f"model version must be a number, 'live' or 'staging', got {version!r}") from None
    if number not in dataset.models:
        raise bad_request(f"model version {number} is not pinned")
    return number


def probabilities(dataset: Dataset, version: int, comment: dict[str, Any]) -> dict[str, float]:
    return dataset.models[version]["model"].predict(comment_text(comment))


def api_label(name: str, probability: float, auto: bool = False) -> dict[str, Any]:
    label: dict[str, Any] = {"name": name.split(" > "), "probability": round(probability, 6)}
    if auto:
        label["auto_thresholds"] = [level for level, minimum in AUTO_THRESHOLDS if probability >= minimum]
    return label


def thresholded(scores: dict[str, float], thresholds: dict[str, float] | None, default: float) -> list[dict[str, Any]]:
    """Labels meeting their threshold (per-label ``thresholds`` if given, else ``default``), most likely first."""
    chosen = []
    for name, probability in scores.items():
        minimum = thresholds.get(name) if thresholds is not None else default
        if minimum is not None and probability >= minimum:
            chosen.append(api_label(name, probability))
    return sorted(chosen, key=lambda label: -label["probability"])


def label_threshold_map(label_thresholds: Any, where: str) -> dict[str, float] | None:
    """``[{"name": ["A", "B"], "threshold": 0.4}]`` as ``{"A > B": 0.4}``; ``None`` if not given."""
    if label_thresholds is None:
        return None
    if not isinstance(label_thresholds, list):
        raise bad_request(f"{where} must be a list of {{name, threshold}}")
    out = {}
    for index, item in enumerate(label_thresholds):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str):
            name = name.split(" > ")
        threshold = item.get("threshold", 0.0) if isinstance(item, dict) else None
        if not isinstance(name, list) or not name or not all(isinstance(p, str) and p for p in name):
            raise bad_request(f"{where}[{index}].name must be a list of label name parts")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise bad_request(f"{where}[{index}].threshold must be a number from 0 to 1")
        out[" > ".join(name)] = float(threshold)
    return out


def predict(state: EmulatorState, dataset: Dataset, version: Any, body: dict[str, Any]) -> dict[str, Any]:
    """``POST .../labellers/<version>/predict``: billed per document."""
    number = resolve_version(dataset, version)
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents:
        raise bad_request("documents must be a non-empty list")
    if len(documents) > MAX_PREDICT_DOCUMENTS:
        raise bad_request(f"at most {MAX_PREDICT_DOCUMENTS} documents per request, got {len(documents)}")
    for index, document in enumerate(documents):
        if not isinstance(document, dict) or not isinstance(document.get("messages"), list):
            raise bad_request(f"documents[{index}] must be an object with 'messages'")
    threshold = body.get("threshold", DEFAULT_PREDICT_THRESHOLD)
    auto = threshold == "auto"
    if not auto and (isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1):
        raise bad_request("threshold must be a number from 0 to 1 or 'auto'")
    per_label = label_threshold_map(body.get("labels"), "labels")
    minimum = AUTO_THRESHOLDS[0][1] if auto else float(threshold)
    predictions = []
    for document in documents:
        scores = probabilities(dataset, number, document)
        if auto:
            labels = [
                api_label(name, p, auto=True)
                for name, p in sorted(scores.items(), key=lambda item: -item[1])
                if p >= minimum and (per_label is None or name in per_label)
            ]
        else:
            labels = thresholded(scores, per_label, minimum)
        predictions.append({"labels": labels, "entities": []})
    state.billed_predictions += len(documents)
    return {"predictions": predictions, "model": {"version": number}}
