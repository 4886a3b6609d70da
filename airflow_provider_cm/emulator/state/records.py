"""What the emulator stores: projects, sources with their comments, datasets with their annotations,
streams and pinned model versions. Each kind of object is a dataclass here with its API form
(``to_api()``) and its stored form, the JSON of the snapshot and the journal (``to_json()`` and
``from_json()``; ``meta_json()`` for the objects stored without their parts). A new kind follows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter
from typing import Any

from airflow_provider_cm.api.times import parse_time, time_key
from airflow_provider_cm.emulator.rules.classifier import NaiveBayesModel


@dataclass(slots=True)
class Project:
    """A project, which sources and datasets belong to (by its name)."""

    id: str
    name: str
    title: str
    description: str
    created_at: str
    updated_at: str

    def to_api(self) -> dict[str, Any]:
        """The API's project object."""
        return {
            "id": self.id,
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_json(self) -> dict[str, Any]:
        """The stored form (the API's)."""
        return self.to_api()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Project:
        """Read the stored form."""
        return cls(
            data["id"],
            data["name"],
            data.get("title") or "",
            data.get("description") or "",
            data["created_at"],
            data["updated_at"],
        )


@dataclass(slots=True)
class Comment:
    """A comment of a source: its ``fields`` as the client sent them (in their order, without the
    fields the emulator sets, ``timestamp`` normalised, blank user properties dropped), its ``uid``
    (``<source id>.<id>``) and ``created_at`` (its first upload), and the sort keys of its two
    times (microseconds; derived, not stored), which the listings order by."""

    fields: dict[str, Any]
    uid: str
    created_at: str
    timestamp_key: int = field(init=False, repr=False, compare=False)
    created_at_key: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.timestamp_key = time_key(parse_time(self.fields["timestamp"], "timestamp"))
        self.created_at_key = _upload_key(self.created_at)

    @property
    def id(self) -> str:
        """The comment's id in its source."""
        return self.fields["id"]  # type: ignore[no-any-return]

    def changed(self, fields: dict[str, Any]) -> Comment:
        """The same comment (``uid``, ``created_at``) with new fields."""
        return Comment(fields, self.uid, self.created_at)

    def to_api(self, has_annotations: bool) -> dict[str, Any]:
        """The API's comment object: its fields, ``uid``, ``created_at`` and ``has_annotations``."""
        return {**self.fields, "uid": self.uid, "created_at": self.created_at, "has_annotations": has_annotations}

    def to_json(self) -> dict[str, Any]:
        """The stored form: the fields, then ``uid`` and ``created_at``."""
        return {**self.fields, "uid": self.uid, "created_at": self.created_at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comment:
        """Read the stored form."""
        fields = dict(data)
        uid, created_at = fields.pop("uid"), fields.pop("created_at")
        return cls(fields, uid, created_at)


@lru_cache(maxsize=256)
def _upload_key(created_at: str) -> int:
    """The sort key of an upload time, parsed once for the comments of one upload (which share it)."""
    return time_key(parse_time(created_at, "created_at"))


#: A comment's sort key by the name of the time a listing orders by (``order_by``).
SORT_KEYS = {"timestamp": attrgetter("timestamp_key"), "created_at": attrgetter("created_at_key")}


@dataclass(slots=True)
class Annotation:
    """A comment's annotations in a dataset: label groups (``labelling``), general fields
    (``entities``: ``{"assigned", "dismissed"}``) and field extractions (``moon_forms``), each
    ``None`` until written (an empty list is written, and shown)."""

    labelling: list[dict[str, Any]] | None = None
    entities: dict[str, Any] | None = None
    moon_forms: list[Any] | None = None

    def to_api(self) -> dict[str, Any]:
        """The kinds written, as the API shows them beside the comment."""
        out: dict[str, Any] = {}
        if self.labelling is not None:
            out["labelling"] = self.labelling
        if self.entities is not None:
            out["entities"] = self.entities
        if self.moon_forms is not None:
            out["moon_forms"] = self.moon_forms
        return out

    def to_json(self) -> dict[str, Any]:
        """The stored form (the API's)."""
        return self.to_api()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Annotation:
        """Read the stored form."""
        return cls(data.get("labelling"), data.get("entities"), data.get("moon_forms"))

    def assigned_labels(self) -> list[dict[str, Any]]:
        """The labels assigned, of every group."""
        return [label for group in self.labelling or () for label in group.get("assigned", ())]

    def annotated(self) -> bool:
        """Whether the comment counts as annotated (the API's ``has_annotations``): assigned or
        dismissed labels, assigned general fields or field extractions."""
        if any(group.get("assigned") or group.get("dismissed") for group in self.labelling or ()):
            return True
        return bool((self.entities or {}).get("assigned") or self.moon_forms)

    def reviewed(self) -> bool:
        """Whether a source-wide read of annotations lists the comment: as :meth:`annotated`, or
        with dismissed general fields."""
        return self.annotated() or bool((self.entities or {}).get("dismissed"))


#: Source fields the API returns as given at creation or update, with their defaults.
SOURCE_DEFAULTS: dict[str, Any] = {
    "title": "",
    "description": "",
    "language": "en",
    "should_translate": False,
    "sensitive_properties": [],
    "_kind": "unknown",
}


@dataclass
class Source:
    """A source: its fields and its comments by id."""

    id: str
    project: str
    name: str
    fields: dict[str, Any]
    created_at: str
    updated_at: str
    comments: dict[str, Comment] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        """The API's source object; ``bucket_id`` only when it is set (the API types it string)."""
        out: dict[str, Any] = {"id": self.id, "owner": self.project, "name": self.name}
        for key, default in SOURCE_DEFAULTS.items():
            value = self.fields.get(key)
            out[key] = default if value is None else value
        for optional in ("bucket_id", "email_transform_tag"):
            if self.fields.get(optional) is not None:
                out[optional] = self.fields[optional]
        out["created_at"] = self.created_at
        out["updated_at"] = self.updated_at
        return out

    def meta_json(self) -> dict[str, Any]:
        """The stored form of everything but the comments."""
        return {
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "fields": self.fields,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Source:
        """Read the stored form of :meth:`meta_json` (without comments)."""
        return cls(data["id"], data["project"], data["name"], data["fields"], data["created_at"], data["updated_at"])


@dataclass
class Stream:
    """A stream: its definition, its cursor ``(time key, uid)`` and its tagged exceptions."""

    id: str
    dataset_id: str
    name: str
    title: str
    description: str
    created_at: str
    updated_at: str
    comment_filter: dict[str, Any]
    model: dict[str, Any] | None
    cursor: tuple[int, str]
    exceptions: dict[str, Any] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        """The API's stream object (``model.label_thresholds`` always a list, as the CLI requires)."""
        out: dict[str, Any] = {
            "id": self.id,
            "dataset_id": self.dataset_id,
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "comment_filter": self.comment_filter,
            "label_threshold_filter": None,
        }
        if self.model is not None:
            out["model"] = {
                "version": self.model["version"],
                "label_thresholds": self.model.get("label_thresholds") or [],
            }
        return out

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {**self.to_api(), "model": self.model, "cursor": list(self.cursor), "exceptions": self.exceptions}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stream:
        """Read the stored form (also the older one with ``_cursor`` and ``_exceptions`` keys)."""
        cursor = data.get("cursor") or data["_cursor"]
        return cls(
            id=data["id"],
            dataset_id=data["dataset_id"],
            name=data["name"],
            title=data.get("title") or "",
            description=data.get("description") or "",
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            comment_filter=data.get("comment_filter") or {},
            model=data.get("model"),
            cursor=(int(cursor[0]), str(cursor[1])),
            exceptions=dict(data.get("exceptions", data.get("_exceptions")) or {}),
        )


@dataclass
class ModelVersion:
    """A pinned model version: a classifier trained once on the dataset's assigned labels."""

    version: int
    trained_time: str
    trained_on: int
    model: NaiveBayesModel

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "version": self.version,
            "trained_time": self.trained_time,
            "trained_on": self.trained_on,
            "model": self.model.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelVersion:
        """Read the stored form."""
        return cls(
            int(data["version"]),
            data["trained_time"],
            int(data["trained_on"]),
            NaiveBayesModel.from_json(data["model"]),
        )


@dataclass
class Dataset:
    """A dataset over sources: its fields, annotations by uid, label names, models, tags, streams."""

    id: str
    project: str
    name: str
    fields: dict[str, Any]
    source_ids: list[str]
    created: str
    last_modified: str
    annotations: dict[str, Annotation] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)
    models: dict[int, ModelVersion] = field(default_factory=dict)
    model_tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    streams: dict[str, Stream] = field(default_factory=dict)

    def label_groups(self) -> list[dict[str, Any]]:
        """The label taxonomy as the API returns it: the groups given at creation, in order, each
        label definition as given (``title`` defaulting to the name); the ``default`` group holds
        the top-level ``label_defs`` and every label first seen in an annotation."""
        groups: dict[str, dict[str, dict[str, Any]]] = {"default": {}}
        given = [("default", d) for d in self.fields.get("label_defs") or []]
        for group in self.fields.get("label_groups") or []:
            given.extend((group.get("name") or "default", d) for d in group.get("label_defs") or [])
        for group_name, label_def in given:
            groups.setdefault(group_name, {}).setdefault(label_def["name"], label_def)
        defined = {name for defs in groups.values() for name in defs}
        for name in self.label_names:
            if name not in defined:
                groups["default"][name] = {"name": name}
        return [
            {
                "name": group_name,
                "instructions": "",
                "label_defs": [
                    {**d, "title": d.get("title") or d["name"], "description": d.get("description") or ""}
                    for d in defs.values()
                ],
            }
            for group_name, defs in groups.items()
        ]

    def to_api(self) -> dict[str, Any]:
        """The API's dataset object, with every field the official CLI requires."""
        label_groups = self.label_groups()
        return {
            "id": self.id,
            "owner": self.project,
            "name": self.name,
            "title": self.fields.get("title") or "",
            "description": self.fields.get("description") or "",
            "created": self.created,
            "last_modified": self.last_modified,
            "model_family": self.fields.get("model_family") or "english",
            "source_ids": list(self.source_ids),
            "has_sentiment": self.fields.get("has_sentiment", True) is not False,
            "entity_defs": self.fields.get("entity_defs") or [],
            "general_fields": self.fields.get("general_fields") or [],
            "label_defs": label_groups[0]["label_defs"],
            "label_groups": label_groups,
            "_dataset_flags": self.fields.get("_dataset_flags") or [],
            "_model_config": self.fields.get("_model_config") or {"kind": "cm"},
        }

    def meta_json(self) -> dict[str, Any]:
        """The stored form of the definition (not annotations, models, tags or streams)."""
        return {
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "fields": self.fields,
            "source_ids": self.source_ids,
            "created": self.created,
            "last_modified": self.last_modified,
            "label_names": self.label_names,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dataset:
        """Read the stored form of :meth:`meta_json` (without annotations, models, tags or streams)."""
        return cls(
            data["id"],
            data["project"],
            data["name"],
            data["fields"],
            list(data["source_ids"]),
            data["created"],
            data["last_modified"],
            label_names=list(data.get("label_names", [])),
        )
