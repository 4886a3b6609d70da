"""The tenant: every object one emulated Communications Mining tenant holds, and every change to it.

Resource modules (:mod:`~airflow_provider_cm.emulator.routes.projects`,
:mod:`~airflow_provider_cm.emulator.routes.sources`,
:mod:`~airflow_provider_cm.emulator.routes.comments`, ...) parse a request, look
objects up here and call one of the methods under "changes" below; they never assign into these
dicts or objects themselves. Each change method marks what it changed (:meth:`Tenant.touch`), which
is how :class:`~airflow_provider_cm.emulator.state.store.Store` knows what to journal, and how the sorted
listings know their cache is stale. A change method does no checking a route should do (names,
bodies, existence of what the route refers to): it is handed objects the route has already checked.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_cm.emulator.errors import bad_request, not_found
from airflow_provider_cm.emulator.state.records import (
    SORT_KEYS,
    Annotation,
    Comment,
    Dataset,
    ModelVersion,
    Project,
    Source,
    Stream,
)

#: One row of a sorted listing of a dataset's comments: (time key, uid, source id, comment id).
IndexRow = tuple[int, str, str, str]


class Tenant:
    """The projects, sources (with their comments), datasets (with annotations, model versions and
    streams) and billing counters of one tenant."""

    def __init__(self) -> None:
        self._version = 0
        self._index_cache: dict[tuple[Any, ...], tuple[int, list[IndexRow]]] = {}
        self._touched: dict[tuple[Any, ...], None] = {}
        self.clear_data()

    def clear_data(self) -> None:
        """Forget every object and counter."""
        self.projects: dict[str, Project] = {}
        self.sources: dict[str, Source] = {}
        self.datasets: dict[str, Dataset] = {}
        self.billed_comments = 0
        self.billed_predictions = 0
        self.billed_by_source: dict[str, int] = {}
        self._touched = {}
        self._version += 1

    def touch(self, *key: Any) -> None:
        """Mark the object at ``key`` (e.g. ``("comment", source_id, comment_id)``) as changed."""
        self._touched[key] = None
        self._version += 1

    def take_touched(self) -> list[tuple[Any, ...]]:
        """The keys touched since the last call, in the order first touched."""
        keys, self._touched = list(self._touched), {}
        return keys

    # -- lookups ----------------------------------------------------------------------------------

    def require_project(self, project: str) -> None:
        """:raises ApiError: 400 if the project does not exist."""
        if project not in self.projects:
            raise bad_request(f"project '{project}' does not exist")

    def find_source(self, project: str, name: str) -> Source | None:
        """The source ``project/name``, or ``None``."""
        return next((s for s in self.sources.values() if s.project == project and s.name == name), None)

    def source(self, project_or_id: str, name: str | None = None) -> Source:
        """A source by ``project, name`` or by ``"id:<id>"``; 404 if there is none."""
        if name is None:
            found = self.sources.get(project_or_id[3:]) if project_or_id.startswith("id:") else None
        else:
            found = self.find_source(project_or_id, name)
        if found is None:
            raise not_found()
        return found

    def find_dataset(self, project: str, name: str) -> Dataset | None:
        """The dataset ``project/name``, or ``None``."""
        return next((d for d in self.datasets.values() if d.project == project and d.name == name), None)

    def dataset(self, project_or_id: str, name: str | None = None) -> Dataset:
        """A dataset by ``project, name`` or by ``"id:<id>"``; 404 if there is none."""
        if name is None:
            found = self.datasets.get(project_or_id[3:]) if project_or_id.startswith("id:") else None
        else:
            found = self.find_dataset(project_or_id, name)
        if found is None:
            raise not_found()
        return found

    def comment_by_uid(self, dataset: Dataset, uid: str) -> Comment:
        """A comment of one of the dataset's sources by ``<source_id>.<comment_id>``; 404 if none."""
        source_id, _, comment_id = uid.partition(".")
        source = self.sources.get(source_id) if source_id in dataset.source_ids else None
        comment = source.comments.get(comment_id) if source else None
        if comment is None:
            raise not_found()
        return comment

    def sorted_index(self, dataset: Dataset, order_by: str, source_ids: tuple[str, ...]) -> list[IndexRow]:
        """The comments of ``source_ids`` sorted by ``order_by`` then uid (cached until a change)."""
        cache_key = (dataset.id, order_by, source_ids)
        cached = self._index_cache.get(cache_key)
        if cached and cached[0] == self._version:
            return cached[1]
        rows: list[IndexRow] = []
        sort_key = SORT_KEYS[order_by]
        for source_id in source_ids:
            source = self.sources.get(source_id)
            if source is None:
                continue
            for comment_id, comment in source.comments.items():
                rows.append((sort_key(comment), comment.uid, source_id, comment_id))
        rows.sort()
        self._index_cache = {k: v for k, v in self._index_cache.items() if v[0] == self._version}
        self._index_cache[cache_key] = (self._version, rows)
        return rows

    # -- changes: projects, sources, datasets -----------------------------------------------------

    def put_project(self, project: Project) -> Project:
        """Store a new project under its name."""
        self.projects[project.name] = project
        self.touch("project", project.name)
        return project

    def update_project(self, project: Project, title: str | None, description: str | None, updated_at: str) -> Project:
        """Set the project's ``title`` and ``description`` (those not ``None``) and its ``updated_at``."""
        if title is not None:
            project.title = title
        if description is not None:
            project.description = description
        project.updated_at = updated_at
        self.touch("project", project.name)
        return project

    def put_source(self, source: Source) -> Source:
        """Store a new source."""
        self.sources[source.id] = source
        self.touch("source", source.id)
        return source

    def update_source(self, source: Source, fields: dict[str, Any], updated_at: str) -> Source:
        """Set the source's given fields and its ``updated_at``."""
        source.fields.update(fields)
        source.updated_at = updated_at
        self.touch("source", source.id)
        return source

    def put_dataset(self, dataset: Dataset) -> Dataset:
        """Store a dataset (new, or one whose fields a route has just set)."""
        self.datasets[dataset.id] = dataset
        self.touch("dataset", dataset.id)
        return dataset

    def update_dataset(self, dataset: Dataset, fields: dict[str, Any], updated_at: str | None = None) -> Dataset:
        """Set a dataset's fields (``source_ids`` as a list of ids; the rest as the API names them).

        :param updated_at: the new ``last_modified``; ``None`` while a route builds a new dataset.
        """
        fields = dict(fields)
        if "source_ids" in fields:
            dataset.source_ids = list(fields.pop("source_ids"))
        dataset.fields.update(fields)
        if updated_at is not None:
            dataset.last_modified = updated_at
        self.touch("dataset", dataset.id)
        return dataset

    def delete_dataset(self, dataset: Dataset) -> None:
        """Forget a dataset with its annotations, model versions and streams (its sources stay)."""
        del self.datasets[dataset.id]
        self.touch("dataset", dataset.id)

    def learn_label_names(self, dataset: Dataset, names: list[str]) -> None:
        """Add the names the dataset does not have yet to its label names, in order."""
        new = [name for name in dict.fromkeys(names) if name not in dataset.label_names]
        if new:
            dataset.label_names.extend(new)
            self.touch("dataset", dataset.id)

    # -- changes: comments, annotations, billing --------------------------------------------------

    def put_comment(self, source: Source, comment: Comment) -> None:
        """Store a comment (new, or replacing the one with its id)."""
        comment_id = comment.id
        source.comments[comment_id] = comment
        self.touch("comment", source.id, comment_id)

    def delete_comment(self, source: Source, comment_id: str) -> bool:
        """Forget a comment and its annotations in every dataset; ``False`` if there was none."""
        comment = source.comments.pop(comment_id, None)
        if comment is None:
            return False
        self.touch("comment", source.id, comment_id)
        for dataset in self.datasets.values():
            if dataset.annotations.pop(comment.uid, None) is not None:
                self.touch("annotation", dataset.id, comment.uid)
        return True

    def drop_assigned_entities(self, uid: str) -> None:
        """Remove the assigned general fields of comment ``uid`` in every dataset (its text changed)."""
        for dataset in self.datasets.values():
            annotation = dataset.annotations.get(uid)
            if annotation is not None and annotation.entities:
                annotation.entities = {**annotation.entities, "assigned": []}
                self.touch("annotation", dataset.id, uid)

    def put_annotation(self, dataset: Dataset, uid: str, annotation: Annotation) -> None:
        """Store comment ``uid``'s annotations in a dataset (replacing those it had)."""
        dataset.annotations[uid] = annotation
        self.touch("annotation", dataset.id, uid)

    def bill_comments(self, source: Source, count: int) -> None:
        """Count ``count`` billed comments against the tenant and the source."""
        if count:
            self.billed_comments += count
            self.billed_by_source[source.id] = self.billed_by_source.get(source.id, 0) + count
            self.touch("billing")

    def bill_predictions(self, count: int) -> None:
        """Count ``count`` billed predictions (one per document predicted)."""
        if count:
            self.billed_predictions += count
            self.touch("billing")

    # -- changes: model versions, streams ---------------------------------------------------------

    def put_model_version(self, dataset: Dataset, model: ModelVersion) -> None:
        """Pin a trained model version."""
        dataset.models[model.version] = model
        self.touch("model", dataset.id, model.version)

    def set_model_tag(self, dataset: Dataset, tag: str, version: int, updated_at: str) -> None:
        """Point model tag ``tag`` at pinned ``version``."""
        dataset.model_tags[tag] = {"version": version, "updated_at": updated_at}
        self.touch("tags", dataset.id)

    def put_stream(self, dataset: Dataset, stream: Stream) -> Stream:
        """Store a stream (new, or replacing the one of the same name)."""
        dataset.streams[stream.name] = stream
        self.touch("stream", dataset.id, stream.name)
        return stream

    def delete_stream(self, dataset: Dataset, name: str) -> None:
        """Forget a stream with its cursor and exceptions."""
        del dataset.streams[name]
        self.touch("stream", dataset.id, name)

    def move_stream_cursor(self, dataset: Dataset, stream: Stream, cursor: tuple[int, str]) -> None:
        """Set a stream's cursor (advance or reset)."""
        stream.cursor = cursor
        self.touch("stream", dataset.id, stream.name)

    def tag_stream_exceptions(self, dataset: Dataset, stream: Stream, metadata_by_uid: dict[str, Any]) -> None:
        """Tag comments as exceptions of the stream, each with its metadata (``{"type": ...}``)."""
        stream.exceptions.update(metadata_by_uid)
        self.touch("stream", dataset.id, stream.name)

    def untag_stream_exceptions(self, dataset: Dataset, stream: Stream, uids: list[str]) -> None:
        """Remove exception tags (uids not tagged are ignored)."""
        for uid in uids:
            stream.exceptions.pop(uid, None)
        self.touch("stream", dataset.id, stream.name)
