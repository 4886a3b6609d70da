"""The Communications Mining hook: one thin method per API route over the base hook's request pipeline.

API reference: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/using-the-api
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypedDict

from airflow_provider_cm.api import routes
from airflow_provider_cm.api.email_limits import DEFAULT_TRANSFORM_TAG, MAX_SYNC_DOCUMENTS
from airflow_provider_cm.api.labels import label_levels, label_name
from airflow_provider_cm.api.limits import (
    MAX_ANNOTATION_PAGE,
    MAX_EXPORT_LIMIT,
    MAX_PREDICT_DOCUMENTS,
    MAX_STREAM_FETCH,
    MAX_SYNC_COMMENTS,
)
from airflow_provider_cm.client.annotation_reads import annotation_read_chunks
from airflow_provider_cm.client.export_slices import check_continuation
from airflow_provider_cm.client.settings import endpoint_from_connection
from airflow_provider_cm.client.transport import AttemptObserver, encode_json
from airflow_provider_cm.exceptions import (
    CommunicationsMiningNotFoundError,
    CommunicationsMiningProtocolError,
    CommunicationsMiningTagError,
)
from airflow_provider_cm.hooks.base import CommunicationsMiningBaseHook

__all__ = [
    "CommunicationsMiningBaseHook",
    "CommunicationsMiningHook",
    "RawEmailsSyncResult",
    "SyncResult",
    "annotation_read_chunks",
    "endpoint_from_connection",
    "split_full_name",
]


class SyncResult(TypedDict):
    """Counts returned by the ``sync`` route, and whether they may undercount.

    ``maybe_committed_earlier`` is true when an earlier attempt of the same request failed after
    it may have been carried out and the request was resent: comments that attempt created or
    changed are then counted as ``unchanged`` (they were billed all the same).
    """

    new: int
    updated: int
    unchanged: int
    maybe_committed_earlier: bool


class RawEmailsSyncResult(SyncResult):
    """What ``sync-raw-emails`` answers: :class:`SyncResult` and the comments made, when asked for."""

    comments: list[dict[str, Any]]


def split_full_name(full_name: str, kind: str) -> tuple[str, str]:
    """Split ``"project/name"`` into its two parts.

    :param full_name: the source's or dataset's full name.
    :param kind: ``"source"`` or ``"dataset"``, for the error message.
    :raises ValueError: if ``full_name`` is not exactly two non-empty parts joined by ``/``.
    """
    parts = full_name.split("/") if isinstance(full_name, str) else []
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{kind} must be given as 'project/name', got {full_name!r}")
    return parts[0], parts[1]


class CommunicationsMiningHook(CommunicationsMiningBaseHook):
    """One thin method per route of the UiPath Communications Mining API, over the base hook's
    connection and request pipeline (:class:`~airflow_provider_cm.hooks.base.CommunicationsMiningBaseHook`,
    whose documentation describes the connection, the retries and the errors).

    Every method returns plain Python data. Set-up that creates an object unless it exists is
    :mod:`airflow_provider_cm.common.if_exists`; the export of a time window in slices is
    :class:`~airflow_provider_cm.client.window_export.WindowExport`.
    """

    # -- user, projects ---------------------------------------------------------------------------

    def get_current_user(self) -> dict[str, Any]:
        """The token's user (``GET /auth/user``)."""
        return self.request("GET", routes.CURRENT_USER.path)["user"]

    def list_projects(self) -> list[dict[str, Any]]:
        """All projects the token can see (``GET /api/_private/projects``)."""
        return self.request("GET", routes.LIST_PROJECTS.path)["projects"]

    def get_project(self, project: str) -> dict[str, Any]:
        """One project (``GET /api/_private/projects/<project>``)."""
        return self.request("GET", routes.GET_PROJECT.at(project))["project"]

    def create_project(
        self, project: str, *, title: str | None = None, description: str | None = None
    ) -> dict[str, Any]:
        """Create a project (``PUT /api/_private/projects/<project>``).

        :raises CommunicationsMiningConflictError: if it exists already.
        """
        body = {"project": without_none(title=title, description=description), "user_ids": []}
        return self.request("PUT", routes.CREATE_PROJECT.at(project), json_body=body)["project"]

    # -- sources ----------------------------------------------------------------------------------

    def list_sources(self, project: str | None = None) -> list[dict[str, Any]]:
        """Sources, all or of one project (``GET /api/v1/sources[/<project>]``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/sources
        """
        path = routes.LIST_PROJECT_SOURCES.at(project) if project else routes.LIST_SOURCES.path
        return self.request("GET", path)["sources"]

    def get_source(self, source: str) -> dict[str, Any]:
        """One source by ``"project/name"`` or ``"id:<id>"`` (``GET /api/v1/sources/...``).

        :raises CommunicationsMiningNotFoundError: if there is no such source.
        """
        return self.request("GET", _name_path(source, "source", routes.GET_SOURCE, routes.LIST_PROJECT_SOURCES))[
            "source"
        ]

    def create_source(self, source: str, **fields: Any) -> dict[str, Any]:
        """Create a source (``PUT /api/v1/sources/<project>/<name>``).

        :param source: ``"project/name"``.
        :param fields: source fields such as ``title``, ``description``, ``language``.
        :raises CommunicationsMiningConflictError: if it exists already.
        """
        project, name = split_full_name(source, "source")
        body = {"source": without_none(**fields)}
        return self.request("PUT", routes.CREATE_SOURCE.at(project, name), json_body=body)["source"]

    def sync_comments(
        self,
        source: str,
        comments: Sequence[Mapping[str, Any] | bytes],
        *,
        observer: AttemptObserver | None = None,
    ) -> SyncResult:
        """Create or update comments by id (``POST /api/v1/sources/<project>/<name>/sync``).

        Billed per created comment and per updated comment whose text changed; re-sending an
        unchanged comment costs nothing, so the call is safe to retry.
        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/sync-comments

        :param source: ``"project/name"``.
        :param comments: at most 16,384 comments: objects, or their UTF-8 JSON encodings as ``bytes``
            (used as they are, so a caller that has encoded them once need not do it again).
        :param observer: called with the error of each failed attempt (see :meth:`send`).
        :return: ``{"new": int, "updated": int, "unchanged": int, "maybe_committed_earlier": bool}``
            (see :class:`SyncResult`: when an earlier attempt may have been carried out, the
            counts describe only the last one).
        :raises ValueError: for more than 16,384 comments, or a comment JSON cannot carry (NaN, infinity).
        :raises CommunicationsMiningBadRequestError: if the API refuses the batch.
        """
        if len(comments) > MAX_SYNC_COMMENTS:
            raise ValueError(f"sync takes at most {MAX_SYNC_COMMENTS} comments, got {len(comments)}")
        project, name = split_full_name(source, "source")
        encoded = b",".join(c if isinstance(c, bytes) else encode_json(c) for c in comments)
        reply = self.send(
            "POST",
            routes.SYNC_COMMENTS.at(project, name),
            raw_body=b'{"comments":[' + encoded + b"]}",
            observer=observer,
        )
        body = reply.payload
        return {
            "new": body.get("new", 0),
            "updated": body.get("updated", 0),
            "unchanged": body.get("unchanged", 0),
            "maybe_committed_earlier": reply.maybe_committed_earlier,
        }

    def sync_raw_emails(
        self,
        source: str,
        documents: Sequence[Mapping[str, Any] | bytes],
        *,
        transform_tag: str = DEFAULT_TRANSFORM_TAG,
        include_comments: bool = False,
    ) -> RawEmailsSyncResult:
        """Create or update comments from raw e-mails (``POST /api/v1/sources/<project>/<name>/sync-raw-emails``).

        An upsert by comment id billed like :meth:`sync_comments` (created comments, and updated
        ones whose text changed), so it is retried like ``sync``.
        Docs (billing): https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/introduction

        :param source: ``"project/name"``.
        :param documents: at most 16,384 raw-e-mail documents (see
            :mod:`airflow_provider_cm.pipelines.emails`), or their UTF-8 JSON encodings as ``bytes``.
        :param transform_tag: the tag of the e-mail integration (default the official CLI's).
        :param include_comments: ask the API for the comments it made.
        :return: ``{"new", "updated", "unchanged", "maybe_committed_earlier", "comments"}``
            (``comments`` empty unless asked for).
        :raises ValueError: for more than 16,384 documents.
        :raises CommunicationsMiningBadRequestError: if the API refuses the batch.
        """
        if len(documents) > MAX_SYNC_DOCUMENTS:
            raise ValueError(f"sync-raw-emails takes at most {MAX_SYNC_DOCUMENTS} documents, got {len(documents)}")
        project, name = split_full_name(source, "source")
        encoded = b",".join(d if isinstance(d, bytes) else encode_json(d) for d in documents)
        options = encode_json({"transform_tag": transform_tag, "include_comments": include_comments})
        reply = self.send(
            "POST",
            routes.SYNC_RAW_EMAILS.at(project, name),
            raw_body=b'{"documents":[' + encoded + b"]," + options[1:],
        )
        body = reply.payload
        return {
            "new": body.get("new", 0),
            "updated": body.get("updated", 0),
            "unchanged": body.get("unchanged", 0),
            "maybe_committed_earlier": reply.maybe_committed_earlier,
            "comments": body.get("comments") or [],
        }

    def put_comments(self, source: str, comments: Sequence[Mapping[str, Any]]) -> None:
        """Create comments, refusing ids that already hold different data.

        ``PUT /api/_private/sources/<project>/<name>/comments``, the official CLI's create-only
        route (private; prefer :meth:`sync_comments`, which reports counts). Not retried on 409.

        :raises CommunicationsMiningConflictError: an id already holds different data.
        """
        if len(comments) > MAX_SYNC_COMMENTS:
            raise ValueError(f"put_comments takes at most {MAX_SYNC_COMMENTS} comments, got {len(comments)}")
        project, name = split_full_name(source, "source")
        self.request(
            "PUT",
            routes.PUT_COMMENTS.at(project, name),
            json_body={"comments": list(comments)},
        )

    def get_comment(self, source: str, comment_id: str) -> dict[str, Any]:
        """One comment (``GET /api/v1/sources/<project>/<name>/comments/<id>``)."""
        project, name = split_full_name(source, "source")
        return self.request("GET", routes.GET_COMMENT.at(project, name, comment_id))["comment"]

    # -- datasets ---------------------------------------------------------------------------------

    def list_datasets(self, project: str | None = None) -> list[dict[str, Any]]:
        """Datasets, all or of one project (``GET /api/v1/datasets[/<project>]``)."""
        path = routes.LIST_PROJECT_DATASETS.at(project) if project else routes.LIST_DATASETS.path
        return self.request("GET", path)["datasets"]

    def get_dataset(self, dataset: str) -> dict[str, Any]:
        """One dataset by ``"project/name"`` or ``"id:<id>"`` (``GET /api/v1/datasets/...``).

        :raises CommunicationsMiningNotFoundError: if there is no such dataset.
        """
        return self.request("GET", _name_path(dataset, "dataset", routes.GET_DATASET, routes.LIST_PROJECT_DATASETS))[
            "dataset"
        ]

    def create_dataset(self, dataset: str, *, source_ids: Sequence[str] = (), **fields: Any) -> dict[str, Any]:
        """Create a dataset over sources (``PUT /api/v1/datasets/<project>/<name>``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/datasets

        :param dataset: ``"project/name"``.
        :param source_ids: ids (not names) of the sources it covers.
        :param fields: other dataset fields, e.g. ``title``, ``has_sentiment``, ``label_defs``.
        :raises CommunicationsMiningConflictError: if it exists already.
        """
        project, name = split_full_name(dataset, "dataset")
        body = {"dataset": {"source_ids": list(source_ids), **without_none(**fields)}}
        return self.request("PUT", routes.CREATE_DATASET.at(project, name), json_body=body)["dataset"]

    def update_dataset(self, dataset: str, **fields: Any) -> dict[str, Any]:
        """Update a dataset, e.g. its ``source_ids`` (``POST /api/v1/datasets/<project>/<name>``)."""
        project, name = split_full_name(dataset, "dataset")
        body = {"dataset": without_none(**fields)}
        return self.request("POST", routes.UPDATE_DATASET.at(project, name), json_body=body)["dataset"]

    def delete_dataset(self, dataset: str) -> None:
        """Delete a dataset (``DELETE /api/v1/datasets/<project>/<name>``); its sources stay."""
        project, name = split_full_name(dataset, "dataset")
        self.request("DELETE", routes.DELETE_DATASET.at(project, name))

    def update_annotations(
        self,
        dataset: str,
        uid: str,
        *,
        labelling: Sequence[Mapping[str, Any]] | None = None,
        entities: Mapping[str, Any] | None = None,
        moon_forms: Sequence[Mapping[str, Any]] | None = None,
        observer: AttemptObserver | None = None,
    ) -> dict[str, Any]:
        """Set one comment's labels and entities in a dataset.

        ``POST /api/_private/datasets/<project>/<name>/labellings/<uid>``, the route the official
        ``re`` CLI uses (no public route exists). A kind left ``None`` is unchanged; an empty list
        removes what is there. Writing the same annotations again changes nothing.

        :param dataset: ``"project/name"``.
        :param uid: ``"<source_id>.<comment_id>"``.
        :param labelling: label groups, ``[{"group": "default", "assigned": [{"name": "A > B"}]}]``.
        :param entities: ``{"assigned": [...], "dismissed": [...]}``.
        :param moon_forms: field-extraction annotations.
        :param observer: called with the error of each failed attempt (see :meth:`send`).
        :return: the annotated comment.
        :raises CommunicationsMiningNotFoundError: if the dataset or comment does not exist.
        """
        project, name = split_full_name(dataset, "dataset")
        body = without_none(labelling=labelling, entities=entities, moon_forms=moon_forms)
        return self.send(
            "POST",
            routes.PUT_ANNOTATIONS.at(project, name, uid),
            json_body=body,
            observer=observer,
        ).payload

    def get_annotations(
        self, dataset: str, uids: Sequence[str], *, observer: AttemptObserver | None = None
    ) -> list[dict[str, Any]]:
        """Annotated comments by uid (``GET /api/_private/datasets/<project>/<name>/labellings?id=...``).

        Many uids are read in several requests (:func:`annotation_read_chunks`), so no URL grows
        past what servers accept.

        :param dataset: ``"project/name"``.
        :param uids: ``"<source_id>.<comment_id>"`` of each comment.
        :param observer: called with the error of each failed attempt (see :meth:`send`).
        :return: ``[{"comment": {...}, "labelling"?: [...], "entities"?: {...}, "moon_forms"?: [...]}]``,
            one per comment found.
        :raises CommunicationsMiningNotFoundError: if the dataset, or a comment, does not exist.
        """
        path = self._labellings_path(dataset)
        results: list[dict[str, Any]] = []
        for chunk in annotation_read_chunks(uids):
            params = [("id", uid) for uid in chunk]
            results.extend(self.send("GET", path, params=params, observer=observer).payload["results"])
        return results

    def iter_annotations(
        self, dataset: str, source_id: str, *, return_predictions: bool = False, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every annotated (reviewed) comment of a source in a dataset, one page in memory.

        ``GET /api/_private/datasets/<project>/<name>/labellings?source_id=<id>&return_predictions=<bool>``
        ``&after=<cursor>&limit=<n>``, following ``after`` as the official CLI does: it stops at the
        first page with no results (not when ``after`` is null).

        :param dataset: ``"project/name"``.
        :param source_id: the source's id (not its name).
        :param return_predictions: include the model's predicted labels and entities.
        :param limit: comments per page, 1 to :data:`MAX_ANNOTATION_PAGE` (default: the server's).
        :raises CommunicationsMiningNotFoundError: if the dataset does not exist.
        :raises CommunicationsMiningProtocolError: if a page with results does not move ``after``
            on (or drops it), which would read the same comments forever.
        """
        if limit is not None and not 1 <= limit <= MAX_ANNOTATION_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_ANNOTATION_PAGE}, got {limit}")
        path = self._labellings_path(dataset)
        after: str | None = None
        while True:
            params: list[tuple[str, Any]] = [
                ("source_id", source_id),
                ("return_predictions", "true" if return_predictions else "false"),
            ]
            if after is not None:
                params.append(("after", after))
            if limit is not None:
                params.append(("limit", limit))
            page = self.request("GET", path, params=params)
            results = page.get("results") or []
            if not results:
                return
            next_after = page.get("after")
            if not next_after or next_after == after:
                raise CommunicationsMiningProtocolError(
                    200, f"GET /{path}", "a page of annotations did not move the 'after' cursor on"
                )
            yield from results
            after = next_after

    def _labellings_path(self, dataset: str) -> str:
        project, name = split_full_name(dataset, "dataset")
        return routes.READ_ANNOTATIONS.at(project, name)

    def export_page(
        self,
        dataset: str,
        *,
        start: str | None = None,
        end: str | None = None,
        order_by: str = "timestamp",
        source_ids: Sequence[str] | None = None,
        comment_uids: Sequence[str] | None = None,
        limit: int = MAX_EXPORT_LIMIT,
        continuation: str | None = None,
        observer: AttemptObserver | None = None,
    ) -> dict[str, Any]:
        """One page of ``POST /api/v1/datasets/<project>/<name>/export``.

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/export-a-dataset

        :param start: ISO-8601 time, inclusive (``from``).
        :param end: ISO-8601 time, **inclusive** (``to``), as the API defines it.
        :param order_by: ``"timestamp"`` or ``"created_at"``; also the time ``start``/``end`` filter on.
        :param limit: comments per page, 1 to 256.
        :param observer: called with the error of each failed attempt (see :meth:`send`).
        :return: ``{"comments": [...], "continuation": str | None}``.
        """
        if order_by not in ("timestamp", "created_at"):
            raise ValueError(f"order_by must be 'timestamp' or 'created_at', got {order_by!r}")
        if not 1 <= limit <= MAX_EXPORT_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_EXPORT_LIMIT}, got {limit}")
        project, name = split_full_name(dataset, "dataset")
        body: dict[str, Any] = {"limit": limit}
        if comment_uids:
            body["comment_uids"] = list(comment_uids)
        else:
            body["order_by"] = order_by
            body.update(without_none(**{"from": start, "to": end}))
            if source_ids:
                body["source_ids"] = list(source_ids)
        if continuation:
            body["continuation"] = continuation
        path = routes.EXPORT.at(project, name)
        page = self.send("POST", path, json_body=body, observer=observer).payload
        return {"comments": page.get("comments", []), "continuation": page.get("continuation")}

    def iter_export_pages(self, dataset: str, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        """Yield export pages, following ``continuation`` to the end (arguments of :meth:`export_page`).

        :raises CommunicationsMiningProtocolError: if a page's ``continuation`` repeats the one sent.
        """
        continuation = kwargs.pop("continuation", None)
        while True:
            page = self.export_page(dataset, continuation=continuation, **kwargs)
            if page["comments"]:
                yield page["comments"]
            next_continuation = page["continuation"]
            if not next_continuation:
                return
            check_continuation(dataset, continuation, next_continuation)
            continuation = next_continuation

    def iter_export(self, dataset: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield every exported comment (arguments of :meth:`export_page`), one page in memory at a time."""
        for page in self.iter_export_pages(dataset, **kwargs):
            yield from page

    # -- streams --------------------------------------------------------------------------------

    def _stream_path(self, dataset: str, stream: str | None = None, action: str | None = None) -> str:
        project, name = split_full_name(dataset, "dataset")
        if stream is None:
            return routes.LIST_STREAMS.at(project, name)
        return _STREAM_ROUTES[action].at(project, name, stream)

    def list_streams(self, dataset: str) -> list[dict[str, Any]]:
        """A dataset's streams (``GET /api/v1/datasets/<project>/<dataset>/streams``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/get-all-streams
        """
        return self.request("GET", self._stream_path(dataset))["streams"]

    def get_stream(self, dataset: str, stream: str) -> dict[str, Any]:
        """One stream (``GET .../streams/<stream>``).

        :raises CommunicationsMiningNotFoundError: if the dataset or stream does not exist.
        """
        return self.request("GET", self._stream_path(dataset, stream))["stream"]

    def put_stream(
        self,
        dataset: str,
        stream: str,
        *,
        model_version: int | None = None,
        label_thresholds: Mapping[str, float] | None = None,
        comment_filter: Mapping[str, Any] | None = None,
        title: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create a stream, or replace its definition (``PUT /api/v1/datasets/<project>/<dataset>/streams``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/create-a-stream

        :param model_version: the pinned model version whose predictions results carry (an
            integer: resolve ``live``/``staging`` first with :meth:`resolve_model_tag`).
        :param label_thresholds: ``{"Parent > Child": 0.4}``: only these labels, at or above
            their thresholds (0 to 1), are attached to results.
        :param comment_filter: e.g. ``{"user_properties": {"string:Channel": {"one_of": ["email"]}}}``.
        """
        body: dict[str, Any] = {"name": stream, **without_none(title=title, description=description)}
        if comment_filter is not None:
            body["comment_filter"] = dict(comment_filter)
        if model_version is not None:
            body["model"] = {"version": int(model_version)}
            if label_thresholds is not None:
                body["model"]["label_thresholds"] = [
                    {"name": label_levels(name), "threshold": float(threshold)}
                    for name, threshold in label_thresholds.items()
                ]
        return self.put_stream_definition(dataset, body)

    def put_stream_definition(self, dataset: str, definition: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace a stream from its definition as the API takes it
        (``PUT /api/v1/datasets/<project>/<dataset>/streams``): ``name``, and ``title``,
        ``description``, ``comment_filter``, ``model`` (``{"version", "label_thresholds":
        [{"name": [levels], "threshold"}]}``). :meth:`put_stream` builds one from arguments.

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/create-a-stream
        """
        return self.request("PUT", self._stream_path(dataset), json_body={"stream": dict(definition)})["stream"]

    def delete_stream(self, dataset: str, stream: str) -> None:
        """Delete a stream (``DELETE .../streams/<stream>``)."""
        self.request("DELETE", self._stream_path(dataset, stream))

    def fetch_stream(
        self, dataset: str, stream: str, *, size: int = 16, max_filtered: int | None = None
    ) -> dict[str, Any]:
        """The next batch of a stream, without moving it (``POST .../streams/<stream>/fetch``).

        Docs: https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/fetch-comments-from-a-stream-legacy.md
        Fetching does not move the stream, so the call is safe to retry.

        :param size: comments to look at, 1 to 1,024 (filtered ones count too).
        :return: ``{"results": [{"comment", "labels", "entities", "sequence_id"}], "filtered": int,
            "is_end_sequence": bool, "sequence_id": str}``; ``sequence_id`` covers the whole batch.
        """
        if not 1 <= size <= MAX_STREAM_FETCH:
            raise ValueError(f"size must be between 1 and {MAX_STREAM_FETCH}, got {size}")
        body = {"size": size, **without_none(max_filtered=max_filtered)}
        return parse_stream_batch(self.request("POST", self._stream_path(dataset, stream, "fetch"), json_body=body))

    def advance_stream(self, dataset: str, stream: str, sequence_id: str) -> None:
        """Acknowledge everything up to ``sequence_id`` (``POST .../streams/<stream>/advance``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/advance-a-stream
        Advancing to the same ``sequence_id`` twice is harmless, so the call is retried.
        """
        if not sequence_id:
            raise ValueError("sequence_id must not be empty")
        self.request("POST", self._stream_path(dataset, stream, "advance"), json_body={"sequence_id": sequence_id})

    def reset_stream(self, dataset: str, stream: str, to_comment_created_at: str) -> dict[str, Any]:
        """Move a stream to the first comment uploaded at or after a time (``POST .../streams/<stream>/reset``).

        Docs: https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/reset-a-stream.md

        :param to_comment_created_at: ISO-8601 time, compared with comments' ``created_at``.
        :return: ``{"sequence_id": str, "stream": {...}}``.
        """
        body = {"to_comment_created_at": to_comment_created_at}
        return self.request("POST", self._stream_path(dataset, stream, "reset"), json_body=body)

    def tag_exceptions(self, dataset: str, stream: str, uids: Sequence[str], exception_type: str) -> None:
        """Tag comments as exceptions of a stream (``PUT .../streams/<stream>/exceptions``).

        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/tag-an-exception

        :param uids: ``"<source_id>.<comment_id>"`` of each comment.
        :param exception_type: a short text saying what went wrong, e.g. ``"No Prediction"``.
        """
        if not uids:
            return
        body = {"exceptions": [{"uid": uid, "metadata": {"type": exception_type}} for uid in uids]}
        self.request("PUT", self._stream_path(dataset, stream, "exceptions"), json_body=body)

    def untag_exceptions(self, dataset: str, stream: str, uids: Sequence[str]) -> None:
        """Remove exception tags (``DELETE .../streams/<stream>/exceptions?uid=...``)."""
        if uids:
            params = [("uid", uid) for uid in uids]
            self.request("DELETE", self._stream_path(dataset, stream, "exceptions"), params=params)

    # -- models -----------------------------------------------------------------------------------

    def get_model_tags(self, dataset: str) -> Any:
        """The dataset's model tags as the API returns them (``GET /api/v1/datasets/<p>/<d>/model-tags``).

        Documented only by the legacy Re:infer docs; needs the "Model Admin" permission. Use
        :meth:`resolve_model_tag` for a version number.
        """
        project, name = split_full_name(dataset, "dataset")
        body = self.request("GET", routes.MODEL_TAGS.at(project, name))
        return body.get("model_tags", body.get("tags"))

    def resolve_model_tag(self, dataset: str, tag: str) -> int:
        """The pinned model version a tag (``live``, ``staging``) points to.

        :raises CommunicationsMiningTagError: if the tag is unknown or the response has no
            recognisable shape.
        """
        return version_for_tag(self.get_model_tags(dataset), tag, dataset)

    def predict(
        self,
        dataset: str,
        version: int | str,
        documents: Sequence[Mapping[str, Any]],
        *,
        threshold: float | str | None = None,
        labels: Mapping[str, float] | None = None,
    ) -> list[dict[str, Any]]:
        """Predict labels for comments that are not in the platform.

        ``POST /api/v1/datasets/<project>/<dataset>/labellers/<version>/predict``; billed per document.
        Docs: https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/predictions.md
        Not retried once sent (each attempt would be billed).

        :param version: a pinned version number, or ``"live"`` / ``"staging"``.
        :param documents: at most 4,096 comment-shaped objects (``messages``, ``timestamp``, ...).
        :param threshold: 0 to 1 (API default 0.25), or ``"auto"``.
        :param labels: per-label thresholds ``{"Parent > Child": 0.5}``, restricting the labels.
        :return: one prediction per document, in order: ``{"labels": [...], "entities": [...]}``.
        """
        if not documents or len(documents) > MAX_PREDICT_DOCUMENTS:
            raise ValueError(f"predict takes 1 to {MAX_PREDICT_DOCUMENTS} documents, got {len(documents)}")
        project, name = split_full_name(dataset, "dataset")
        body = {"documents": list(documents), **prediction_options(threshold, labels)}
        path = routes.PREDICT.at(project, name, str(version))
        return self.request("POST", path, json_body=body)["predictions"]

    def predict_comments(
        self,
        dataset: str,
        version: int | str,
        uids: Sequence[str],
        *,
        threshold: float | str | None = None,
        labels: Mapping[str, float] | None = None,
    ) -> list[dict[str, Any]]:
        """Predict comments already stored in the platform with a pinned model version.

        ``POST /api/v1/datasets/<project>/<dataset>/labellers/<version>/predict-comments``, the
        route the official CLI uses for ``re get comments --model-version``. The vendor's docs bill
        predictions only for comments not in the platform, so this route is not listed as billable
        (API reference, section 5). It changes nothing, so the route table resends it after a dropped
        connection, as the official CLI retries it (API reference, section 2).
        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/introduction

        :param version: a pinned version number, or ``"live"`` / ``"staging"``.
        :param uids: 1 to 4,096 ``"<source_id>.<comment_id>"``.
        :param threshold: 0 to 1 (API default 0.25), or ``"auto"``.
        :param labels: per-label thresholds ``{"Parent > Child": 0.5}``, restricting the labels.
        :return: ``[{"uid", "labels": [{"name": [levels], "probability", ...}], "entities"}]`` in
            the order of ``uids``.
        :raises ValueError: for no uid or more than 4,096.
        """
        if not uids or len(uids) > MAX_PREDICT_DOCUMENTS:
            raise ValueError(f"predict-comments takes 1 to {MAX_PREDICT_DOCUMENTS} uids, got {len(uids)}")
        project, name = split_full_name(dataset, "dataset")
        body = {"uids": list(uids), **prediction_options(threshold, labels)}
        path = routes.PREDICT_COMMENTS.at(project, name, str(version))
        return self.request("POST", path, json_body=body)["predictions"]

    def predict_raw_emails(
        self,
        dataset: str,
        version: int | str,
        documents: Sequence[Mapping[str, Any]],
        *,
        transform_tag: str = DEFAULT_TRANSFORM_TAG,
        threshold: float | str | None = None,
        labels: Mapping[str, float] | None = None,
    ) -> list[dict[str, Any]]:
        """Predict labels for raw e-mails that are not in the platform.

        ``POST /api/v1/datasets/<project>/<dataset>/labellers/<version>/predict-raw-emails``;
        billed per e-mail, so not retried once sent.
        Docs: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/introduction

        :param version: a pinned version number, or ``"live"`` / ``"staging"``.
        :param documents: 1 to 4,096 raw-e-mail documents (see :mod:`airflow_provider_cm.pipelines.emails`).
        :param transform_tag: the tag of the e-mail integration (default the official CLI's).
        :param threshold: 0 to 1 (API default 0.25), or ``"auto"``.
        :param labels: per-label thresholds ``{"Parent > Child": 0.5}``, restricting the labels.
        :return: one prediction per document, in order: ``{"labels": [...], "entities": [...]}``.
        """
        if not documents or len(documents) > MAX_PREDICT_DOCUMENTS:
            raise ValueError(f"predict-raw-emails takes 1 to {MAX_PREDICT_DOCUMENTS} documents, got {len(documents)}")
        project, name = split_full_name(dataset, "dataset")
        body = {"documents": list(documents), "transform_tag": transform_tag, **prediction_options(threshold, labels)}
        path = routes.PREDICT_RAW_EMAILS.at(project, name, str(version))
        return self.request("POST", path, json_body=body)["predictions"]

    # -- updates --------------------------------------------------------------------------------------

    def update_project(
        self, project: str, *, title: str | None = None, description: str | None = None
    ) -> dict[str, Any]:
        """Change a project's title or description (``POST /api/_private/projects/<project>``, private)."""
        body = {"project": without_none(title=title, description=description)}
        return self.request("POST", routes.UPDATE_PROJECT.at(project), json_body=body)["project"]

    def update_source(self, source: str, **fields: Any) -> dict[str, Any]:
        """Change a source's fields (``POST /api/v1/sources/<project>/<name>``).

        The route takes ``title``, ``description``, ``should_translate``, ``sensitive_properties``,
        ``bucket_id`` and ``email_transform_tag``; ``language`` is set at creation only.
        """
        project, name = split_full_name(source, "source")
        body = {"source": without_none(**fields)}
        return self.request("POST", routes.UPDATE_SOURCE.at(project, name), json_body=body)["source"]

    def source_id(self, source: str) -> str:
        """The id of a source given as ``"project/name"``, ``"id:<id>"`` or a bare id.

        :raises CommunicationsMiningNotFoundError: if there is no such source, saying so.
        """
        reference = source if "/" in source or source.startswith("id:") else f"id:{source}"
        try:
            return str(self.get_source(reference)["id"])
        except CommunicationsMiningNotFoundError as exc:
            raise CommunicationsMiningNotFoundError(
                404, exc.route, f"source {source!r} does not exist: create it first (give 'project/name' or its id)"
            ) from None

    async def afetch_stream(self, dataset: str, stream: str, *, size: int = 16) -> dict[str, Any]:
        """:meth:`fetch_stream` for triggers."""
        if not 1 <= size <= MAX_STREAM_FETCH:
            raise ValueError(f"size must be between 1 and {MAX_STREAM_FETCH}, got {size}")
        body = await self.arequest("POST", self._stream_path(dataset, stream, "fetch"), json_body={"size": size})
        return parse_stream_batch(body)


def parse_stream_batch(body: dict[str, Any]) -> dict[str, Any]:
    """A fetched stream batch as plain data, with label names as ``"Parent > Child"`` strings.

    ``body`` is a freshly parsed response: its results are renamed in place and handed on, not
    copied (a batch holds up to 1,024 results of a dozen labels each; copies cost allocations and
    the garbage collector's passes over the worker's whole heap).
    """
    results = body.get("results") or []
    for result in results:
        labels = result.get("labels") or []
        for label in labels:
            label["name"] = label_name(label.get("name"))
        result["labels"] = labels
    return {
        "results": results,
        "filtered": int(body.get("filtered") or 0),
        "is_end_sequence": bool(body.get("is_end_sequence", False)),
        "sequence_id": body.get("sequence_id"),
    }


def version_for_tag(tags: Any, tag: str, dataset: str) -> int:
    """Find ``tag``'s version in a ``model-tags`` response, whatever its documented-or-not shape.

    Accepted: a list of ``{"name"|"tag": ..., "version": ...}`` objects, or a ``{tag: version}``
    map (the version may itself be ``{"version": n}``).

    :raises CommunicationsMiningTagError: for an unknown tag or an unrecognised shape.
    """
    found: dict[str, Any] = {}
    if isinstance(tags, list):
        for item in tags:
            if isinstance(item, dict) and (item.get("name") or item.get("tag")) is not None:
                found[str(item.get("name") or item.get("tag"))] = item.get("version")
    elif isinstance(tags, dict):
        found = {str(k): v.get("version") if isinstance(v, dict) else v for k, v in tags.items()}
    else:
        raise CommunicationsMiningTagError(f"the model-tags response of {dataset} has an unrecognised shape: {tags!r}")
    if tag not in found:
        known = ", ".join(sorted(found)) or "none"
        raise CommunicationsMiningTagError(f"dataset {dataset} has no model tagged {tag!r} (tags: {known})")
    version = found[tag]
    if isinstance(version, bool) or not isinstance(version, (int, str)) or not str(version).isdigit():
        raise CommunicationsMiningTagError(f"tag {tag!r} of {dataset} points to {version!r}, not a version number")
    return int(version)


def prediction_options(threshold: float | str | None, labels: Mapping[str, float] | None) -> dict[str, Any]:
    """The ``threshold`` and per-label ``labels`` of a predict body, where given."""
    options: dict[str, Any] = {}
    if threshold is not None:
        options["threshold"] = threshold
    if labels:
        options["labels"] = [{"name": label_levels(n), "threshold": float(t)} for n, t in labels.items()]
    return options


#: The route of each stream action (the other methods of a path share its path).
_STREAM_ROUTES: dict[str | None, routes.Route] = {
    None: routes.GET_STREAM,
    "fetch": routes.FETCH_STREAM,
    "advance": routes.ADVANCE_STREAM,
    "reset": routes.RESET_STREAM,
    "exceptions": routes.TAG_EXCEPTIONS,
}


def _name_path(name: str, kind: str, by_name: routes.Route, by_id: routes.Route) -> str:
    """The path of an object named ``project/name`` (``by_name``) or ``id:<id>`` (``by_id``)."""
    if name.startswith("id:"):
        return by_id.at(name)
    return by_name.at(*split_full_name(name, kind))


def without_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
