"""Create an object unless it exists: what ``if_exists`` means, and how an existing object is compared.

The set-up functions here (:func:`ensure_project`, :func:`ensure_source`, :func:`ensure_dataset`,
:func:`ensure_stream`), which the set-up operators call over the hook's routes, share one rule,
following the BigQuery provider's ``if_exists``:

* ``"ignore"`` (default): an existing object is left alone; the log says whether it equals what
  was asked or how it differs;
* ``"fail"``: an existing object is an error (:class:`CommunicationsMiningConflictError`);
* ``"update"``: an existing object that differs is changed to what was asked, through the API's
  update route, which takes only some fields (the others are set at creation only).

Only the fields a caller asks for are compared; fields left out are neither compared nor changed.
Lists the API may extend on its own (a dataset's labels, which annotations also create) are
compared as "holds what was asked".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal, TypedDict

from airflow_provider_cm.api.labels import label_levels, label_name
from airflow_provider_cm.exceptions import CommunicationsMiningConflictError, CommunicationsMiningNotFoundError
from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook, split_full_name, without_none

IfExists = Literal["ignore", "fail", "update"]
#: The values ``if_exists`` takes.
IF_EXISTS_CHOICES: tuple[str, ...] = ("ignore", "fail", "update")

#: Fields each kind's update route takes (API reference 3.2, 3.3, 3.6; a stream's PUT replaces all).
UPDATABLE_FIELDS: dict[str, frozenset[str]] = {
    "project": frozenset({"title", "description"}),
    "source": frozenset({"title", "description", "should_translate", "sensitive_properties"}),
    "dataset": frozenset({"source_ids", "title", "description", "entity_defs"}),
    "stream": frozenset({"title", "description", "comment_filter", "model"}),
}


class EnsuredObject(TypedDict):
    """What an ``ensure_*`` call found or did.

    ``object`` is the object as the API returned it (after any creation or update); ``outcome``
    is ``"created"``, ``"updated"`` or ``"left_alone"``; ``differences`` maps each asked field
    in which the existing object differed to ``{"asked": ..., "found": ...}`` (empty when it was
    created or equal).
    """

    object: dict[str, Any]
    outcome: str
    differences: dict[str, dict[str, Any]]


def check_if_exists(if_exists: str, kind: str, asked_fields: Collection[str]) -> None:
    """Refuse an ``if_exists`` value, or an ``"update"`` of fields the API cannot change.

    :param kind: ``"project"``, ``"source"``, ``"dataset"`` or ``"stream"``.
    :param asked_fields: the API fields the caller sets.
    :raises ValueError: saying what to change.
    """
    if if_exists not in IF_EXISTS_CHOICES:
        raise ValueError(f"if_exists must be one of {', '.join(map(repr, IF_EXISTS_CHOICES))}, got {if_exists!r}")
    fixed = sorted(set(asked_fields) - UPDATABLE_FIELDS[kind])
    if if_exists == "update" and fixed:
        updatable = ", ".join(sorted(UPDATABLE_FIELDS[kind]))
        raise ValueError(
            f"if_exists='update' cannot change {', '.join(fixed)} of an existing {kind}: the API's update "
            f"route takes only {updatable}. Leave {', '.join(fixed)} unset, or use if_exists='ignore' "
            "(an existing object is left alone and its differences are logged) or 'fail'."
        )


# -- comparing what was asked with what exists -------------------------------------------------------


def _named(items: Any) -> dict[str, Mapping[str, Any]]:
    return {label_name(item["name"]): item for item in items or [] if isinstance(item, Mapping) and "name" in item}


def _defs_hold(found: Any, asked: Any) -> bool:
    """Every asked definition is among the found ones, with the keys it sets equal."""
    existing = _named(found)
    for name, wanted in _named(asked).items():
        have = existing.get(name)
        if have is None or any(have.get(k) != v for k, v in wanted.items() if k not in ("name", "id")):
            return False
    return True


def _groups_hold(found: Any, asked: Any) -> bool:
    existing = {group.get("name"): group for group in found or []}
    return all(
        group["name"] in existing and _defs_hold(existing[group["name"]].get("label_defs"), group.get("label_defs"))
        for group in asked
    )


def _thresholds(model: Mapping[str, Any] | None) -> dict[str, float]:
    items = (model or {}).get("label_thresholds") or []
    return {label_name(item["name"]): float(item["threshold"]) for item in items}


def _model_equal(found: Any, asked: Any) -> bool:
    if not isinstance(found, Mapping):
        return False
    return found.get("version") == asked.get("version") and _thresholds(found) == _thresholds(asked)


def _same_items(found: Any, asked: Any) -> bool:
    return sorted(found or []) == sorted(asked)


#: How a field is compared when plain equality would report differences the API makes on its own.
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "source_ids": _same_items,
    "sensitive_properties": _same_items,
    "label_defs": _defs_hold,
    "entity_defs": _defs_hold,
    "label_groups": _groups_hold,
    "model": _model_equal,
    "comment_filter": lambda found, asked: (found or {}) == asked,
}


def differences(found: Mapping[str, Any], asked: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The asked fields in which ``found`` differs, as ``{field: {"asked": ..., "found": ...}}``."""
    out = {}
    for key, wanted in asked.items():
        have = found.get(key)
        equal = _COMPARE[key](have, wanted) if key in _COMPARE else have == wanted
        if not equal:
            out[key] = {"asked": wanted, "found": have}
    return out


def describe(kind: str, name: str, found: dict[str, dict[str, Any]]) -> str:
    """``"source acme/inbox differs from what was asked: title ('A' asked, 'B' found)"``."""
    if not found:
        return f"{kind} {name} exists and equals what was asked"
    parts = [f"{key} ({value['asked']!r} asked, {value['found']!r} found)" for key, value in found.items()]
    return f"{kind} {name} exists and differs from what was asked: {'; '.join(parts)}"


# -- the rule -------------------------------------------------------------------------------------


class Setup:
    """One object to ensure: how to read, create and update it, and what was asked.

    :param kind: ``"project"``, ``"source"``, ``"dataset"`` or ``"stream"``.
    :param name: its name in messages, e.g. ``"acme/inbox"``.
    :param asked: the API fields asked for (none ``None``).
    :param get: reads the object (raising :class:`CommunicationsMiningNotFoundError` if absent).
    :param create: creates it from ``asked`` (raising :class:`CommunicationsMiningConflictError`
        if it exists).
    :param update: changes the existing object: called with it and the asked fields that differ.
    :param log: where the outcome is logged.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        asked: dict[str, Any],
        *,
        get: Callable[[], dict[str, Any]],
        create: Callable[[dict[str, Any]], dict[str, Any]],
        update: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
        log: Any,
    ) -> None:
        self.kind = kind
        self.name = name
        self.asked = asked
        self.get = get
        self.create = create
        self.update = update
        self.log = log

    def _existing(self) -> dict[str, Any] | None:
        try:
            return self.get()
        except CommunicationsMiningNotFoundError:
            return None

    def run(self, if_exists: str, route: str) -> EnsuredObject:
        """Apply ``if_exists`` (checked first, see :func:`check_if_exists`).

        :param route: ``"METHOD /path"`` of the create request, for the conflict error.
        :raises CommunicationsMiningConflictError: the object exists and ``if_exists="fail"``.
        """
        check_if_exists(if_exists, self.kind, self.asked)
        existing = self._existing()
        if existing is None:
            try:
                created = self.create(self.asked)
            except CommunicationsMiningConflictError:
                if if_exists == "fail":
                    raise
                existing = self.get()  # created meanwhile by someone else (or by a lost earlier attempt)
            else:
                self.log.info("Created %s %s", self.kind, self.name)
                return {"object": created, "outcome": "created", "differences": {}}
        if if_exists == "fail":
            raise CommunicationsMiningConflictError(
                409, route, f"{self.kind} {self.name} already exists (if_exists='fail')"
            )
        return self._existing_object(existing, if_exists)

    def _existing_object(self, existing: dict[str, Any], if_exists: str) -> EnsuredObject:
        found = differences(existing, self.asked)
        if not found or if_exists == "ignore":
            self.log.info("%s; left alone (if_exists=%r)", describe(self.kind, self.name, found), if_exists)
            return {"object": existing, "outcome": "left_alone", "differences": found}
        self.log.info("%s; updating %s", describe(self.kind, self.name, found), ", ".join(found))
        updated = self.update(existing, {key: self.asked[key] for key in found})
        return {"object": updated, "outcome": "updated", "differences": found}


# -- the set-up of each kind of object ---------------------------------------------------------


def ensure_project(
    hook: CommunicationsMiningHook,
    project: str,
    *,
    title: str | None = None,
    description: str | None = None,
    if_exists: str = "ignore",
) -> EnsuredObject:
    """Create a project unless it exists (``GET``, then ``PUT`` or ``POST /api/_private/projects/<project>``).

    :param if_exists: ``"ignore"``, ``"fail"`` or ``"update"`` (see the module).
    :raises CommunicationsMiningConflictError: it exists and ``if_exists="fail"``.
    """
    asked = without_none(title=title, description=description)
    return Setup(
        "project",
        project,
        asked,
        get=lambda: hook.get_project(project),
        create=lambda fields: hook.create_project(project, **fields),
        update=lambda _, fields: hook.update_project(project, **fields),
        log=hook.log,
    ).run(if_exists, f"PUT /api/_private/projects/{project}")


def ensure_source(
    hook: CommunicationsMiningHook, source: str, *, if_exists: str = "ignore", **fields: Any
) -> EnsuredObject:
    """Create a source unless it exists (``GET``, then ``PUT`` or ``POST /api/v1/sources/<project>/<name>``).

    :param source: ``"project/name"``.
    :param fields: ``title``, ``description``, ``language``, ``should_translate``,
        ``sensitive_properties`` (``None`` values are left out).
    :param if_exists: ``"ignore"``, ``"fail"`` or ``"update"`` (``language`` cannot be updated).
    :raises CommunicationsMiningConflictError: it exists and ``if_exists="fail"``.
    """
    split_full_name(source, "source")
    return Setup(
        "source",
        source,
        without_none(**fields),
        get=lambda: hook.get_source(source),
        create=lambda asked: hook.create_source(source, **asked),
        update=lambda _, changed: hook.update_source(source, **changed),
        log=hook.log,
    ).run(if_exists, f"PUT /api/v1/sources/{source}")


def ensure_dataset(
    hook: CommunicationsMiningHook,
    dataset: str,
    *,
    sources: Sequence[str] | None = None,
    if_exists: str = "ignore",
    **fields: Any,
) -> EnsuredObject:
    """Create a dataset unless it exists (``GET``, then ``PUT`` or ``POST /api/v1/datasets/<project>/<name>``).

    :param dataset: ``"project/name"``.
    :param sources: its sources, as ``"project/name"`` or ids (looked up first: each must exist).
    :param fields: ``title``, ``description``, ``has_sentiment``, ``model_family``,
        ``label_defs``, ``label_groups``, ``entity_defs`` (``None`` values are left out).
    :param if_exists: ``"ignore"``, ``"fail"`` or ``"update"`` (only ``sources``, ``title``,
        ``description`` and ``entity_defs`` can be updated).
    :raises CommunicationsMiningConflictError: it exists and ``if_exists="fail"``.
    :raises CommunicationsMiningNotFoundError: a source does not exist.
    """
    split_full_name(dataset, "dataset")
    asked = without_none(**fields)
    if sources is not None:
        asked["source_ids"] = list(dict.fromkeys(hook.source_id(source) for source in sources))
    return Setup(
        "dataset",
        dataset,
        asked,
        get=lambda: hook.get_dataset(dataset),
        create=lambda wanted: hook.create_dataset(dataset, **wanted),
        update=lambda _, changed: hook.update_dataset(dataset, **changed),
        log=hook.log,
    ).run(if_exists, f"PUT /api/v1/datasets/{dataset}")


def ensure_stream(
    hook: CommunicationsMiningHook,
    dataset: str,
    stream: str,
    *,
    model_version: int | None = None,
    label_thresholds: Mapping[str, float] | None = None,
    comment_filter: Mapping[str, Any] | None = None,
    title: str | None = None,
    description: str | None = None,
    if_exists: str = "ignore",
) -> EnsuredObject:
    """Create a stream unless it exists (``GET .../streams/<stream>``, then ``PUT .../streams``).

    The API's ``PUT`` creates or replaces, so ``"update"`` sends the existing definition with
    the asked fields changed (fields left out keep their values; the stream's position stays).
    Arguments as :meth:`~airflow_provider_cm.hooks.communications_mining.CommunicationsMiningHook.put_stream`.

    :param if_exists: ``"ignore"``, ``"fail"`` or ``"update"``.
    :raises ValueError: ``label_thresholds`` without ``model_version``.
    :raises CommunicationsMiningConflictError: it exists and ``if_exists="fail"``.
    """
    if label_thresholds is not None and model_version is None:
        raise ValueError("label_thresholds apply to a model's predictions: give model_version too")
    asked: dict[str, Any] = without_none(title=title, description=description)
    if comment_filter is not None:
        asked["comment_filter"] = dict(comment_filter)
    if model_version is not None:
        thresholds = label_thresholds or {}
        asked["model"] = {
            "version": int(model_version),
            "label_thresholds": [{"name": label_levels(n), "threshold": float(t)} for n, t in thresholds.items()],
        }

    def replace(existing: dict[str, Any], changed: dict[str, Any]) -> dict[str, Any]:
        keep = {key: existing.get(key) for key in ("title", "description", "comment_filter", "model")}
        body = {"name": stream, **without_none(**keep), **changed}
        return hook.put_stream_definition(dataset, body)

    return Setup(
        "stream",
        f"{dataset}/{stream}",
        asked,
        get=lambda: hook.get_stream(dataset, stream),
        create=lambda wanted: replace({}, wanted),
        update=replace,
        log=hook.log,
    ).run(if_exists, f"PUT /api/v1/datasets/{dataset}/streams")
