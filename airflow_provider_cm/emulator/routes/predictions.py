"""Predictions: ``POST /api/v1/datasets/<p>/<d>/labellers/<version>/predict``, billed per document.

Assumed response (the public docs do not show it): ``{"status": "ok", "predictions": [{"labels":
[{"name": ["Parent", "Child"], "probability": 0.91, "auto_thresholds"?: [...]}], "entities": []}],
"model": {"version": N}}``, one entry per document, in order. ``<version>`` is a pinned version
number, ``live`` or ``staging``. ``POST .../labellers/<version>/predict-comments`` ``{"uids": [...]}``
predicts comments already uploaded (not billed) and answers ``{"predictions": [{"uid", "labels",
"entities"}]}`` in the order of ``uids``, as the official CLI reads it.

The dataset export carries each comment's predictions from the dataset's latest pinned version
(:func:`latest_predictions`), as the platform's export carries "the latest available model's":
``{"labels": [{"name": "A > B", "probability": 0.91, "sentiment"?: -0.4}]}``, names joined with
``" > "``, every label at or above :data:`MIN_REPORTED_PROBABILITY`, most likely first (an
assumption: the reference does not say which labels the export leaves out). ``sentiment`` is
present where the model learnt one for the label.
"""

from __future__ import annotations

import weakref
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.api.limits import MAX_PREDICT_DOCUMENTS
from airflow_provider_cm.emulator.openapi import doc
from airflow_provider_cm.emulator.routes.comments import MESSAGES
from airflow_provider_cm.emulator.routes.model_versions import resolve_version
from airflow_provider_cm.emulator.rules.checks import Check, array, either, number, obj, string, timestamp
from airflow_provider_cm.emulator.rules.classifier import AUTO_THRESHOLDS, NaiveBayesModel, comment_text
from airflow_provider_cm.emulator.rules.user_properties import USER_PROPERTIES
from airflow_provider_cm.emulator.schemas import (
    OBJECT,
    PREDICTED_LABEL,
    PREDICTION,
    STRING,
    U32,
    envelope,
    list_of,
    shape,
)
from airflow_provider_cm.emulator.state.records import Dataset
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import json_body, ok

DEFAULT_PREDICT_THRESHOLD = 0.25
#: Without thresholds, labels below this probability are left out of stream results.
MIN_REPORTED_PROBABILITY = 0.01

NAME_PARTS = array(string(min_len=1, max_len=64), min_items=1, max_items=64)
#: ``[{"name": ["A", "B"], "threshold": 0.4}]``: per-label thresholds, in predict and in streams.
LABEL_THRESHOLDS: Check = array(
    obj(
        {
            "name": either(NAME_PARTS, string(min_len=1), describe="a list of label name parts"),
            "threshold": number(minimum=0, maximum=1),
        },
        required=("name",),
    ),
    max_items=4096,
)
DOCUMENT = obj(
    {"messages": MESSAGES, "timestamp": timestamp(), "user_properties": USER_PROPERTIES, "text_format": string()},
    required=("messages",),
)
PREDICT_BODY_THRESHOLD = either(
    number(minimum=0, maximum=1), string(choices=("auto",)), describe="a number from 0 to 1 or 'auto'"
)
PREDICT_BODY = obj(
    {
        "documents": array(DOCUMENT, min_items=1, max_items=MAX_PREDICT_DOCUMENTS),
        "threshold": PREDICT_BODY_THRESHOLD,
        "labels": LABEL_THRESHOLDS,
    },
    required=("documents",),
)


#: Each model's probabilities by text, so re-exporting a dataset does not classify every comment
#: again (a pinned version never changes; forgotten with the model, and past :data:`_CACHE_SIZE`).
_CACHE: weakref.WeakKeyDictionary[NaiveBayesModel, dict[str, dict[str, float]]] = weakref.WeakKeyDictionary()
_CACHE_SIZE = 300_000


def _predict(model: NaiveBayesModel, text: str) -> dict[str, float]:
    cache = _CACHE.setdefault(model, {})
    found = cache.get(text)
    if found is None:
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        found = cache[text] = model.predict(text)
    return found


def probabilities(dataset: Dataset, version: int, document: dict[str, Any]) -> dict[str, float]:
    """Every label's probability for a document (or a stored comment's fields) under a pinned version."""
    return dict(_predict(dataset.models[version].model, comment_text(document)))


def latest_predictions(dataset: Dataset, document: dict[str, Any]) -> dict[str, Any]:
    """``{"labels": [...]}``: a stored comment's predictions (from its fields) by the latest pinned
    version, as the export gives them (no labels while the dataset has no pinned version)."""
    if not dataset.models:
        return {"labels": []}
    model = dataset.models[max(dataset.models)].model
    scores = _predict(model, comment_text(document))
    labels = []
    for name, probability in sorted(scores.items(), key=lambda item: (-item[1], item[0])):
        if probability < MIN_REPORTED_PROBABILITY:
            continue
        label: dict[str, Any] = {"name": name, "probability": round(probability, 6)}
        sentiment = model.sentiment(name, scores)
        if sentiment is not None:
            label["sentiment"] = sentiment
        labels.append(label)
    return {"labels": labels}


def api_label(name: str, probability: float, auto: bool = False) -> dict[str, Any]:
    """A predicted label as the API writes it (list-form name)."""
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


def label_threshold_map(label_thresholds: Any) -> dict[str, float] | None:
    """Checked ``[{"name": [...], "threshold": t}]`` as ``{"A > B": t}``; ``None`` if not given or empty."""
    if not label_thresholds:
        return None
    out = {}
    for item in label_thresholds:
        name = item["name"]
        out[" > ".join(name) if isinstance(name, list) else name] = float(item.get("threshold") or 0.0)
    return out


def _auto_labels(scores: dict[str, float], per_label: dict[str, float] | None) -> list[dict[str, Any]]:
    minimum = AUTO_THRESHOLDS[0][1]
    return [
        api_label(name, p, auto=True)
        for name, p in sorted(scores.items(), key=lambda item: -item[1])
        if p >= minimum and (per_label is None or name in per_label)
    ]


PREDICT_COMMENTS_BODY = obj(
    {
        "uids": array(string(min_len=1), min_items=1, max_items=MAX_PREDICT_DOCUMENTS),
        "threshold": PREDICT_BODY_THRESHOLD,
        "labels": LABEL_THRESHOLDS,
    },
    required=("uids",),
)


def _labels(scores: dict[str, float], body: dict[str, Any]) -> list[dict[str, Any]]:
    threshold = body.get("threshold")
    threshold = DEFAULT_PREDICT_THRESHOLD if threshold is None else threshold
    per_label = label_threshold_map(body.get("labels"))
    return _auto_labels(scores, per_label) if threshold == "auto" else thresholded(scores, per_label, threshold)


def predict_comments(store: Store, dataset: Dataset, version: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Predict stored comments of the dataset by uid (not billed: they are in the platform)."""
    number_ = resolve_version(dataset, version)
    PREDICT_COMMENTS_BODY(body, "body")
    predictions = []
    for uid in body["uids"]:
        scores = probabilities(dataset, number_, store.comment_by_uid(dataset, uid).fields)
        predictions.append({"uid": uid, "labels": _labels(scores, body), "entities": []})
    return {"predictions": predictions}


def predict(store: Store, dataset: Dataset, version: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Predict every document's labels with a pinned version; bill one prediction per document."""
    number_ = resolve_version(dataset, version)
    PREDICT_BODY(body, "body")
    documents = body["documents"]
    predictions = [
        {"labels": _labels(probabilities(dataset, number_, document), body), "entities": []} for document in documents
    ]
    store.bill_predictions(len(documents))
    return {"predictions": predictions, "model": {"version": number_}}


def router(store: Store) -> APIRouter:
    """The predict route."""
    routes = APIRouter()
    by_document = envelope(predictions=list_of(PREDICTION), model=shape({"version": U32}))
    by_uid = envelope(
        predictions=list_of(shape({"uid": STRING, "entities": list_of(OBJECT)}, {"labels": list_of(PREDICTED_LABEL)}))
    )

    @routes.post(
        api.PREDICT.url,
        **doc(by_document, body=PREDICT_BODY, errors=(400, 404)),
    )
    async def predict_route(project: str, name: str, version: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(**(await store.write(lambda s: predict(s, s.dataset(project, name), version, body))))

    @routes.post(
        api.PREDICT_COMMENTS.url,
        **doc(by_uid, body=PREDICT_COMMENTS_BODY, errors=(400, 404)),
    )
    async def predict_comments_route(project: str, name: str, version: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(**store.read(lambda s: predict_comments(s, s.dataset(project, name), version, body)))

    return routes
