"""Pinned model versions and model tags (``live`` / ``staging``).

Assumptions where the public docs are silent (see the API reference, sections 3.8-3.9):

* ``GET /api/v1/datasets/<p>/<d>/model-tags`` answers
  ``{"status": "ok", "model_tags": [{"name": "live", "version": 3, "updated_at": "..."}]}``.
* ``POST /api/_private/datasets/<p>/<d>/labellers`` lists pinned versions as
  ``{"labellers": [{"version", "model_id", "trained_time"}], "dataset_status": {}}``.
* Versions are pinned (and tagged) through the emulator-only route
  ``POST /_emulator/datasets/<p>/<d>/models`` ``{"tag": "live"}``; a version is trained on the
  dataset's assigned labels at that moment and never changes afterwards.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.api.times import api_time, now_utc
from airflow_provider_cm.emulator.errors import ApiError, bad_request
from airflow_provider_cm.emulator.openapi import doc
from airflow_provider_cm.emulator.rules.classifier import NaiveBayesModel, comment_text
from airflow_provider_cm.emulator.schemas import LABELLER, MODEL_TAG, OBJECT, envelope, list_of
from airflow_provider_cm.emulator.state.records import Dataset, ModelVersion
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import ok

TAGS = ("live", "staging")


_SENTIMENT = {"positive": 1.0, "negative": -1.0}


def _training_examples(store: Store, dataset: Dataset) -> tuple[list[tuple[str, list[str]]], list[tuple[str, float]]]:
    examples = []
    sentiments: list[tuple[str, float]] = []
    for uid, annotation in sorted(dataset.annotations.items()):
        source_id, _, comment_id = uid.partition(".")
        source = store.sources.get(source_id) if source_id in dataset.source_ids else None
        comment = source.comments.get(comment_id) if source else None
        labels = annotation.assigned_labels()
        if comment is not None and labels:
            examples.append((comment_text(comment.fields), [label["name"] for label in labels]))
            sentiments.extend(
                (label["name"], _SENTIMENT[label["sentiment"]])
                for label in labels
                if label.get("sentiment") in _SENTIMENT
            )
    return examples, sentiments


def train_version(store: Store, dataset: Dataset, tag: str | None = None, at: str | None = None) -> dict[str, Any]:
    """Train a classifier on the dataset's assigned leaf labels, pin it as the next version, tag it.

    :param at: the version's ``trained_time`` (and the tag's ``updated_at``); now if not given.
    """
    if tag is not None and tag not in TAGS:
        raise bad_request(f"tag must be one of {', '.join(TAGS)}")
    examples, sentiments = _training_examples(store, dataset)
    if not examples:
        raise bad_request(f"dataset '{dataset.project}/{dataset.name}' has no assigned labels to train on")
    version = max(dataset.models, default=0) + 1
    trained_time = at or api_time(now_utc())
    model = NaiveBayesModel.train(examples, sentiments)
    store.put_model_version(dataset, ModelVersion(version, trained_time, len(examples), model))
    if tag:
        set_tag(store, dataset, tag, version, at=trained_time)
    return {"version": version, "trained_on": len(examples), "tag": tag}


def set_tag(store: Store, dataset: Dataset, tag: str, version: Any, at: str | None = None) -> None:
    """Point ``tag`` at a pinned version (``at``: the tag's ``updated_at``, now if not given)."""
    if tag not in TAGS:
        raise bad_request(f"tag must be one of {', '.join(TAGS)}")
    if isinstance(version, bool) or not isinstance(version, int):
        raise bad_request("version must be an integer")
    if version not in dataset.models:
        raise bad_request(f"model version {version} is not pinned")
    store.set_model_tag(dataset, tag, version, at or api_time(now_utc()))


def model_tags(dataset: Dataset) -> list[dict[str, Any]]:
    """The dataset's tags as ``[{"name", "version", "updated_at"}]``."""
    return [{"name": tag, **value} for tag, value in sorted(dataset.model_tags.items())]


def resolve_version(dataset: Dataset, version: Any) -> int:
    """A pinned version number from a number, a numeric string, ``live`` or ``staging``."""
    if isinstance(version, str) and version in TAGS:
        if version not in dataset.model_tags:
            raise ApiError(404, f"no model is tagged '{version}'")
        return int(dataset.model_tags[version]["version"])
    if isinstance(version, bool) or not isinstance(version, (int, str)):
        raise bad_request(f"model version must be a number, 'live' or 'staging', got {version!r}")
    try:
        number = int(version)
    except ValueError:
        raise bad_request(f"model version must be a number, 'live' or 'staging', got {version!r}") from None
    if number not in dataset.models:
        raise bad_request(f"model version {number} is not pinned")
    return number


def labellers(dataset: Dataset) -> list[dict[str, Any]]:
    """The pinned versions, as the private ``labellers`` route lists them."""
    return [
        {"version": m.version, "model_id": "emulator-naive-bayes", "trained_time": m.trained_time}
        for m in dataset.models.values()
    ]


def router(store: Store) -> APIRouter:
    """The model-tag and pinned-version routes."""
    routes = APIRouter()

    @routes.get(api.MODEL_TAGS.url, **doc(envelope(model_tags=list_of(MODEL_TAG)), errors=(404,)))
    async def tags_route(project: str, name: str) -> Response:
        return ok(model_tags=store.read(lambda s: model_tags(s.dataset(project, name))))

    @routes.post(
        api.PIN_MODEL.url,
        **doc(envelope(labellers=list_of(LABELLER), dataset_status=OBJECT), errors=(404,)),
    )
    async def labellers_route(project: str, name: str) -> Response:
        return ok(labellers=store.read(lambda s: labellers(s.dataset(project, name))), dataset_status={})

    return routes
