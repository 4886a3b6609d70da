"""The API's routes: method, path, whether a dropped request may be sent again, and their limits.

One table, read by the client (:meth:`ApiCall.to_api
<airflow_provider_cm.client.transport.ApiCall.to_api>` takes each request's resend rule from it)
and by the emulator (its routers are checked against it, and its body limits come from
:mod:`airflow_provider_cm.api.limits` as the table's do). A new route is one entry here, one hook
method, one emulator handler.

``resend``: whether sending the request twice has the effect of sending it once, so that a request
the server may have received before the connection dropped is sent again. Reads, upserts and
cursor moves to a named position are; a predict request (billed per document) is not. A path no
route matches is never resent.

Paths are relative to the endpoint, with ``{segment}`` placeholders; :meth:`Route.at` fills them,
percent-encoding each value as one segment (``/`` becomes ``%2F``; ``id:<id>``
keeps its colon).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import quote

from airflow_provider_cm.api import limits


@dataclass(frozen=True)
class Route:
    """One API route.

    :param method: the HTTP method.
    :param path: the path after the endpoint, ``{name}`` for each segment the caller fills.
    :param resend: whether a request that may have reached the server may be sent again.
    :param limits: the route's limits by what they bound (e.g. ``{"comments": 16384}``).
    """

    method: str
    path: str
    resend: bool
    limits: Mapping[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The path as a router declares it (leading ``/``)."""
        return "/" + self.path

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """Matches a filled-in path of this route (each placeholder one non-empty segment)."""
        parts = re.split(r"(\{\w+\})", self.path)
        return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + r"\Z")

    def at(self, *segments: str) -> str:
        """The path with its placeholders filled in order, each value percent-encoded as one segment.

        :raises ValueError: if the number of values is not the number of placeholders.
        """
        names = re.findall(r"\{\w+\}", self.path)
        if len(names) != len(segments):
            raise ValueError(f"{self.path} takes {len(names)} segments, got {len(segments)}")
        values = iter(quote(str(s), safe=":") for s in segments)
        return re.sub(r"\{\w+\}", lambda _: next(values), self.path)


CURRENT_USER = Route("GET", "auth/user", True)

LIST_PROJECTS = Route("GET", "api/_private/projects", True)
GET_PROJECT = Route("GET", "api/_private/projects/{project}", True)
CREATE_PROJECT = Route("PUT", "api/_private/projects/{project}", True)
UPDATE_PROJECT = Route("POST", "api/_private/projects/{project}", True)

LIST_SOURCES = Route("GET", "api/v1/sources", True)
#: ``{project}`` is a project's name (its sources) or ``id:<source id>`` (that source).
LIST_PROJECT_SOURCES = Route("GET", "api/v1/sources/{project}", True)
GET_SOURCE = Route("GET", "api/v1/sources/{project}/{name}", True)
CREATE_SOURCE = Route("PUT", "api/v1/sources/{project}/{name}", True)
UPDATE_SOURCE = Route("POST", "api/v1/sources/{project}/{name}", True)

SYNC_COMMENTS = Route("POST", "api/v1/sources/{project}/{name}/sync", True, {"comments": limits.MAX_SYNC_COMMENTS})
PUT_COMMENTS = Route(
    "PUT", "api/_private/sources/{project}/{name}/comments", True, {"comments": limits.MAX_SYNC_COMMENTS}
)
GET_COMMENT = Route("GET", "api/v1/sources/{project}/{name}/comments/{comment_id}", True)
DELETE_COMMENTS = Route("DELETE", "api/v1/sources/{project}/{name}/comments", True, {"ids": limits.MAX_DELETE_IDS})
SYNC_RAW_EMAILS = Route("POST", "api/v1/sources/{project}/{name}/sync-raw-emails", True)

LIST_DATASETS = Route("GET", "api/v1/datasets", True)
#: ``{project}`` is a project's name (its datasets) or ``id:<dataset id>`` (that dataset).
LIST_PROJECT_DATASETS = Route("GET", "api/v1/datasets/{project}", True)
GET_DATASET = Route("GET", "api/v1/datasets/{project}/{name}", True)
CREATE_DATASET = Route("PUT", "api/v1/datasets/{project}/{name}", True)
UPDATE_DATASET = Route("POST", "api/v1/datasets/{project}/{name}", True)
DELETE_DATASET = Route("DELETE", "api/v1/datasets/{project}/{name}", True)

PUT_ANNOTATIONS = Route("POST", "api/_private/datasets/{project}/{name}/labellings/{uid}", True)
READ_ANNOTATIONS = Route(
    "GET",
    "api/_private/datasets/{project}/{name}/labellings",
    True,
    {"ids": limits.MAX_ANNOTATION_READ_IDS, "page": limits.MAX_ANNOTATION_PAGE},
)
EXPORT = Route("POST", "api/v1/datasets/{project}/{name}/export", True, {"limit": limits.MAX_EXPORT_LIMIT})

MODEL_TAGS = Route("GET", "api/v1/datasets/{project}/{name}/model-tags", True)
PIN_MODEL = Route("POST", "api/_private/datasets/{project}/{name}/labellers", True)
PREDICT = Route(
    "POST",
    "api/v1/datasets/{project}/{name}/labellers/{version}/predict",
    False,
    {"documents": limits.MAX_PREDICT_DOCUMENTS},
)
PREDICT_COMMENTS = Route(
    "POST",
    "api/v1/datasets/{project}/{name}/labellers/{version}/predict-comments",
    # Predicts stored comments: changes nothing and is not listed as billable; the CLI retries it.
    True,
    {"uids": limits.MAX_PREDICT_DOCUMENTS},
)
PREDICT_RAW_EMAILS = Route(
    "POST",
    "api/v1/datasets/{project}/{name}/labellers/{version}/predict-raw-emails",
    False,
    {"documents": limits.MAX_PREDICT_DOCUMENTS},
)

_STREAMS_PATH = "api/v1/datasets/{project}/{name}/streams"
LIST_STREAMS = Route("GET", _STREAMS_PATH, True)
PUT_STREAM = Route("PUT", _STREAMS_PATH, True)
GET_STREAM = Route("GET", _STREAMS_PATH + "/{stream}", True)
UPDATE_STREAM = Route("POST", _STREAMS_PATH + "/{stream}", True)
DELETE_STREAM = Route("DELETE", _STREAMS_PATH + "/{stream}", True)
TAG_EXCEPTIONS = Route("PUT", _STREAMS_PATH + "/{stream}/exceptions", True)
UNTAG_EXCEPTIONS = Route("DELETE", _STREAMS_PATH + "/{stream}/exceptions", True)
FETCH_STREAM = Route("POST", _STREAMS_PATH + "/{stream}/fetch", True, {"size": limits.MAX_STREAM_FETCH})
ADVANCE_STREAM = Route("POST", _STREAMS_PATH + "/{stream}/advance", True)
RESET_STREAM = Route("POST", _STREAMS_PATH + "/{stream}/reset", True)
STREAM_RESULTS = Route("GET", "api/v1/datasets/{project}/{name}/streams/{stream}/results", True)
PREVIEW_STREAM_RESULTS = Route("GET", "api/preview/datasets/{project}/{name}/streams/{stream}/results", True)

_CURRENT: dict[str, Route] = {name: value for name, value in dict(globals()).items() if isinstance(value, Route)}
#: The stream routes under their former name, ``triggers``, which the API still serves.
LEGACY_TRIGGER_ROUTES: dict[str, Route] = {
    f"LEGACY_{name}": Route(r.method, r.path.replace("/streams", "/triggers", 1), r.resend, r.limits)
    for name, r in _CURRENT.items()
    if r.path.startswith(_STREAMS_PATH) and not r.path.endswith("/results")
}
#: Every route, by name.
ROUTES: dict[str, Route] = {**_CURRENT, **LEGACY_TRIGGER_ROUTES}
#: The first segment of every route's path (``api``, ``auth``): what a path after any prefix starts with.
ROOTS: tuple[str, ...] = tuple(sorted({r.path.split("/", 1)[0] for r in ROUTES.values()}))


#: The routes by method and number of ``/`` in the path (a placeholder is one segment): the only ones a path can match.
_BY_SHAPE: dict[tuple[str, int], list[Route]] = {}
for _route in ROUTES.values():
    _BY_SHAPE.setdefault((_route.method, _route.path.count("/")), []).append(_route)


def route_of(method: str, path: str) -> Route | None:
    """The route a request is for (``path`` after the endpoint, without query), or ``None``.

    A literal segment wins over a placeholder: ``api/v1/sources/p/s/sync`` is :data:`SYNC_COMMENTS`.
    """
    path = path.split("?", 1)[0].lstrip("/")
    found = [r for r in _BY_SHAPE.get((method.upper(), path.count("/")), ()) if r.pattern.match(path)]
    return min(found, key=lambda r: r.path.count("{"), default=None)


def may_resend(method: str, path: str) -> bool:
    """Whether a request that may have reached the server may be sent again: the route's rule, else no."""
    found = route_of(method, path)
    return found is not None and found.resend
