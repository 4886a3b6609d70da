"""Annotations ("labellings"): labels, entities and field extractions per dataset, keyed by uid.

``POST /api/_private/datasets/<p>/<d>/labellings/<uid>`` writes one comment's annotations: a kind
left out is unchanged, an empty list removes it. The uid is matched percent-encoded, so comment
ids holding ``/`` work. Reading them back (by uid, or a source's page by page) is
:mod:`~airflow_provider_cm.emulator.routes.labelling_reads`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.emulator.errors import bad_request
from airflow_provider_cm.emulator.openapi import doc
from airflow_provider_cm.emulator.rules.checks import Check, array, either, integer, obj, string
from airflow_provider_cm.emulator.schemas import ANNOTATED_COMMENT, envelope
from airflow_provider_cm.emulator.state.records import Annotation, Comment, Dataset
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import json_body, ok, segment

LABEL_NAME = either(
    string(min_len=1), array(string(min_len=1), min_items=1, max_items=64), describe="a label name or list of parts"
)
LABEL = obj(
    {"name": LABEL_NAME, "sentiment": string(choices=("positive", "negative")), "metadata": obj({})},
    required=("name",),
)
LABELS = array(LABEL)
GROUP = obj({"group": string(min_len=1, max_len=64), "assigned": LABELS, "dismissed": LABELS})
SPAN = obj(
    {
        "content_part": string(),
        "message_index": integer(minimum=0),
        "utf16_byte_start": integer(minimum=0),
        "utf16_byte_end": integer(minimum=0),
    }
)
ENTITY = obj(
    {"name": string(min_len=1), "formatted_value": string(), "span": SPAN, "spans": array(SPAN)}, required=("name",)
)
ENTITIES = obj({"assigned": array(ENTITY), "dismissed": array(ENTITY)})
MOON_FORMS: Check = array(obj({}))
ANNOTATION_BODY = obj({"labelling": array(GROUP), "entities": ENTITIES, "moon_forms": MOON_FORMS})


def _clean_label(label: dict[str, Any]) -> dict[str, Any]:
    name = label["name"]
    out: dict[str, Any] = {"name": " > ".join(name) if isinstance(name, list) else name}
    if not out["name"].strip():
        raise bad_request("a label name must not be blank")
    for optional in ("sentiment", "metadata"):
        if label.get(optional) is not None:
            out[optional] = label[optional]
    return out


def _clean_group(group: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {"group": group.get("group") or "default"}
    for kind in ("assigned", "dismissed"):
        if group.get(kind) is not None:
            clean[kind] = [_clean_label(label) for label in group[kind]]
    return clean


def _assigned_names(groups: list[dict[str, Any]]) -> list[str]:
    return [label["name"] for group in groups for label in group.get("assigned", [])]


def update_annotations(store: Store, dataset: Dataset, uid: str, body: dict[str, Any]) -> dict[str, Any]:
    """Write one comment's annotations; answer the annotated comment."""
    comment = store.comment_by_uid(dataset, uid)
    ANNOTATION_BODY(body, "body")
    old = dataset.annotations.get(uid) or Annotation()
    labelling, entities, moon_forms = old.labelling, old.entities, old.moon_forms
    if body.get("labelling") is not None:
        labelling = [_clean_group(group) for group in body["labelling"]]
        store.learn_label_names(dataset, _assigned_names(labelling))
    if body.get("entities") is not None:
        given = body["entities"]
        entities = {"assigned": list(given.get("assigned") or []), "dismissed": list(given.get("dismissed") or [])}
    if body.get("moon_forms") is not None:
        moon_forms = body["moon_forms"]
    store.put_annotation(dataset, uid, Annotation(labelling, entities, moon_forms))
    return annotated_comment(store, dataset, comment)


def has_annotations(store: Store, dataset: Dataset | None, uid: str) -> bool:
    """Whether the comment has labels, entities or extractions (in ``dataset``, or in any)."""
    datasets = [dataset] if dataset else store.datasets.values()
    for ds in datasets:
        annotation = ds.annotations.get(uid)
        if annotation is not None and annotation.annotated():
            return True
    return False


def public_comment(store: Store, comment: Comment, dataset: Dataset | None = None) -> dict[str, Any]:
    """A stored comment as the API shows it, with ``has_annotations``."""
    return comment.to_api(has_annotations(store, dataset, comment.uid))


def annotated_comment(store: Store, dataset: Dataset, comment: Comment) -> dict[str, Any]:
    """``{"comment", "labelling"?, "entities"?, "moon_forms"?}`` for one comment in a dataset."""
    annotation = dataset.annotations.get(comment.uid)
    out: dict[str, Any] = {"comment": public_comment(store, comment, dataset)}
    if annotation is not None:
        out.update(annotation.to_api())
    return out


def router(store: Store) -> APIRouter:
    """The annotation write route."""
    routes = APIRouter()

    @routes.post(
        api.PUT_ANNOTATIONS.url,
        **doc({"allOf": [envelope(), ANNOTATED_COMMENT]}, body=ANNOTATION_BODY, errors=(400, 404)),
    )
    async def write_route(project: str, name: str, uid: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(**(await store.write(lambda s: update_annotations(s, s.dataset(project, name), segment(uid), body))))

    return routes
