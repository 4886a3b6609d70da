"""What the routes answer, as JSON Schema: the envelopes and the API's objects.

The objects carry the fields the vendor's contracts require (the official CLI's response types
and the Power Automate connector's Swagger, as ``tests/unit/emulator/test_contracts.py`` checks them):
a required field is listed in ``required``; an optional one (``Option<T>`` in the CLI) may be
absent or ``null``. Objects stay open to further fields, as the API adds fields over time and
the clients ignore those they do not know.
"""

from __future__ import annotations

from typing import Any

STRING: dict[str, Any] = {"type": "string"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
NUMBER: dict[str, Any] = {"type": "number"}
U32: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
OBJECT: dict[str, Any] = {"type": "object"}
#: An RFC 3339 time with its zone (chrono's ``DateTime<Utc>`` in the CLI).
TIME: dict[str, Any] = {"type": "string", "format": "date-time"}


def list_of(item: dict[str, Any]) -> dict[str, Any]:
    """A JSON array of ``item``."""
    return {"type": "array", "items": item}


def optional(schema: dict[str, Any]) -> dict[str, Any]:
    """A field that may be ``null`` when present (``Option<T>``); leave it out of ``required``."""
    return {"anyOf": [schema, {"type": "null"}]}


def shape(required: dict[str, Any], optional_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with ``required`` fields and ``optional_fields`` (absent or null allowed)."""
    properties = dict(required)
    properties.update({name: optional(schema) for name, schema in (optional_fields or {}).items()})
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def envelope(**fields: dict[str, Any]) -> dict[str, Any]:
    """``{"status": "ok", ...fields}``: every field required."""
    return {
        "type": "object",
        "properties": {"status": {"const": "ok"}, **fields},
        "required": ["status", *fields],
    }


#: ``{"status": "error", "message": "..."}``, the body of every error the API answers.
ERROR = {
    "type": "object",
    "properties": {"status": {"const": "error"}, "message": STRING},
    "required": ["status", "message"],
}

PROJECT = shape(
    {"name": STRING, "title": STRING, "description": STRING, "created_at": TIME, "updated_at": TIME},
    {"id": STRING},
)
SOURCE = shape(
    {
        "id": STRING,
        "owner": STRING,
        "name": STRING,
        "title": STRING,
        "description": STRING,
        "language": STRING,
        "should_translate": BOOLEAN,
        "sensitive_properties": list_of(STRING),
        "created_at": TIME,
        "updated_at": TIME,
    },
    {"bucket_id": STRING},
)
ENTITY_DEF = shape(
    {
        "id": STRING,
        "name": STRING,
        "title": STRING,
        "color": U32,
        "inherits_from": list_of(STRING),
        "trainable": BOOLEAN,
    }
)
LABEL_DEF = shape({"name": STRING}, {"title": STRING, "description": STRING})
DATASET = shape(
    {
        "id": STRING,
        "name": STRING,
        "owner": STRING,
        "title": STRING,
        "description": STRING,
        "created": TIME,
        "last_modified": TIME,
        "model_family": STRING,
        "source_ids": list_of(STRING),
        "has_sentiment": BOOLEAN,
        "entity_defs": list_of(ENTITY_DEF),
        "general_fields": list_of(OBJECT),
        "label_defs": list_of(LABEL_DEF),
        "label_groups": list_of(shape({"name": STRING}, {"label_defs": list_of(LABEL_DEF)})),
        "_dataset_flags": list_of(STRING),
    }
)
COMMENT = shape(
    {
        "id": STRING,
        "uid": STRING,
        "timestamp": TIME,
        "messages": list_of(shape({"body": shape({"text": STRING})})),
        "created_at": TIME,
    },
    {"thread_id": STRING, "user_properties": OBJECT, "has_annotations": BOOLEAN},
)
LABEL = shape({"name": STRING}, {"sentiment": STRING})
ANNOTATED_COMMENT = shape(
    {"comment": COMMENT},
    {
        "labelling": list_of(shape({"group": STRING}, {"assigned": list_of(LABEL), "dismissed": list_of(LABEL)})),
        "entities": shape({}, {"assigned": list_of(OBJECT), "dismissed": list_of(OBJECT)}),
    },
)
EXPORTED_LABEL = shape({"name": STRING}, {"sentiment": STRING, "metadata": OBJECT})
EXPORTED_PREDICTION = shape({"name": STRING, "probability": NUMBER}, {"sentiment": NUMBER})
EXPORTED_COMMENT = shape(
    {
        "comment": COMMENT,
        "annotations": shape({"labels": shape({"assigned": list_of(EXPORTED_LABEL)})}),
        "predictions": shape({"labels": list_of(EXPORTED_PREDICTION)}),
    }
)
LABEL_THRESHOLD = shape({"name": list_of(STRING), "threshold": NUMBER})
STREAM = shape(
    {
        "id": STRING,
        "dataset_id": STRING,
        "name": STRING,
        "title": STRING,
        "description": STRING,
        "created_at": TIME,
        "updated_at": TIME,
    },
    {
        "comment_filter": OBJECT,
        "label_threshold_filter": shape({"label": STRING, "model_version": U32, "threshold": NUMBER}),
        "model": shape({"version": U32, "label_thresholds": list_of(LABEL_THRESHOLD)}),
    },
)
PREDICTED_LABEL = shape({"name": list_of(STRING), "probability": NUMBER}, {"auto_thresholds": list_of(STRING)})
STREAM_RESULT = shape(
    {"comment": COMMENT, "sequence_id": STRING},
    {"labels": list_of(PREDICTED_LABEL), "entities": list_of(OBJECT)},
)
BATCH = {"results": list_of(STREAM_RESULT), "filtered": U32, "sequence_id": STRING, "is_end_sequence": BOOLEAN}
RESULTS = {
    "results": list_of({"allOf": [STREAM_RESULT, shape({"continuation": STRING})]}),
    "continuation": STRING,
    "is_end_sequence": BOOLEAN,
}
MODEL_TAG = shape({"name": STRING, "version": U32, "updated_at": TIME})
LABELLER = shape({"version": U32, "model_id": STRING, "trained_time": TIME})
PREDICTION = shape({"labels": list_of(PREDICTED_LABEL), "entities": list_of(OBJECT)})
USER = shape(
    {
        "id": STRING,
        "username": STRING,
        "email": STRING,
        "created": TIME,
        "global_permissions": list_of(STRING),
        "organisation_permissions": OBJECT,
        "verified": BOOLEAN,
    }
)
OAUTH_TOKEN = shape({"access_token": STRING, "token_type": STRING, "expires_in": NUMBER}, {"scope": STRING})
OAUTH_ERROR = shape({"error": STRING}, {"error_description": STRING})
