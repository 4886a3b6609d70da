"""Set-up operators: create a project, source, dataset or stream unless it exists (``if_exists``).

Each operator reads the object first and then, following the BigQuery provider's ``if_exists``:

* ``"ignore"`` (default): creates it if it is missing, otherwise leaves it alone and logs whether
  it equals what was asked or how it differs, so the task can run on every DAG run;
* ``"fail"``: fails the task if it exists;
* ``"update"``: changes an existing object to what was asked, through the API's update route.
  Those routes take only some fields (a source's ``language``, a dataset's sentiment, model
  family and label taxonomy are set at creation only): asking to update one of those raises a
  ``ValueError`` when the DAG is parsed.

Only the fields given are compared or changed. The XCom is the object as the API returned it,
plus ``outcome`` (``"created"``, ``"updated"`` or ``"left_alone"``) and ``differences``
(``{field: {"asked", "found"}}`` for each field the existing object differed in); every key is
also an XCom of its own, so ``create_source.output["id"]`` works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm.common.if_exists import (
    EnsuredObject,
    check_if_exists,
    ensure_dataset,
    ensure_project,
    ensure_source,
    ensure_stream,
)
from airflow_provider_cm.exceptions import CommunicationsMiningConflictError, CommunicationsMiningTagError
from airflow_provider_cm.hooks.communications_mining import split_full_name
from airflow_provider_cm.operators.base import CommunicationsMiningBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

#: A label definition: its name (``"Parent > Child"``) or the API's object (``{"name", "title", ...}``).
LabelDef = str | Mapping[str, Any]


class _CreateOperator(CommunicationsMiningBaseOperator):
    """What the set-up operators share: ``if_exists``, the conflict error, the XCom."""

    returns_mapping = True
    #: ``"project"``, ``"source"``, ``"dataset"`` or ``"stream"``.
    kind: str = ""

    def __init__(self, *, if_exists: str = "ignore", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.if_exists = if_exists

    def _check_if_exists(self, asked: Mapping[str, Any]) -> None:
        """Refuse a bad ``if_exists`` (or an impossible update) when the DAG is parsed."""
        check_if_exists(self.if_exists, self.kind, [key for key, value in asked.items() if value is not None])

    def _ensure(self) -> EnsuredObject:
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            ensured = self._ensure()
        except CommunicationsMiningConflictError as exc:
            raise AirflowFailException(
                f"{exc.message}: nothing was changed. Use if_exists='ignore' to leave an existing "
                f"{self.kind} alone, or 'update' to change it."
            ) from None
        return {**ensured["object"], "outcome": ensured["outcome"], "differences": ensured["differences"]}


class CommunicationsMiningCreateProjectOperator(_CreateOperator):
    """Create a project unless it exists.

    Routes (private, used by the official ``re`` CLI; no public documentation,
    https://github.com/reinfer/cli ``api/src/resources/project.rs``): ``GET
    /api/_private/projects/<project>``, then ``PUT`` to create or ``POST`` to update it.

    :param project: the project name, ``[A-Za-z0-9_-]+``. Templated.
    :param title: its title (``str``). Templated.
    :param description: its description (``str``). Templated.
    :param if_exists: ``"ignore"`` (default), ``"fail"`` or ``"update"`` (title and description).
    :return: (XCom) the project (``id``, ``name``, ``title``, ``description``, ``created_at``,
        ``updated_at``) with ``outcome`` and ``differences``.
    :raises ValueError: (DAG parsing) an unknown ``if_exists``.
    :raises AirflowFailException: it exists and ``if_exists="fail"``.
    :raises CommunicationsMiningApiError: the API refused a request (e.g. no permission).
    """

    kind = "project"
    template_fields: Sequence[str] = ("project", "title", "description")

    def __init__(
        self,
        *,
        project: str,
        title: str | None = None,
        description: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.title = title
        self.description = description
        self._check_if_exists({"title": title, "description": description})

    def _ensure(self) -> EnsuredObject:
        return ensure_project(
            self.hook, self.project, title=self.title, description=self.description, if_exists=self.if_exists
        )


class CommunicationsMiningCreateSourceOperator(_CreateOperator):
    """Create a source unless it exists.

    Routes: ``GET /api/v1/sources/<project>/<source>``, then ``PUT`` to create or ``POST`` to
    update it (https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/sources-api,
    https://developers.reinfer.io/api/reference/sources). The project must exist.

    :param source: ``"project/source"``. Templated.
    :param title: its title (``str``, at most 128 characters). Templated.
    :param description: its description (``str``). Templated.
    :param language: ``"en"``, ``"de"`` or ``"xlm"`` (API default ``"en"``); set at creation
        only. Templated.
    :param should_translate: whether the platform translates its comments (``bool``).
    :param sensitive_properties: user property names hidden from users without the "View
        sensitive data" permission (``list[str]``). Templated.
    :param if_exists: ``"ignore"`` (default), ``"fail"`` or ``"update"`` (every field but ``language``).
    :return: (XCom) the source (``id``, ``owner``, ``name``, ``title``, ``description``,
        ``language``, ``should_translate``, ``sensitive_properties``, ``created_at``,
        ``updated_at``, ...) with ``outcome`` and ``differences``.
    :raises ValueError: (DAG parsing) an unknown ``if_exists``, or ``"update"`` with ``language``.
    :raises AirflowFailException: it exists and ``if_exists="fail"``.
    :raises CommunicationsMiningBadRequestError: the project does not exist, or a field is invalid.
    """

    kind = "source"
    template_fields: Sequence[str] = ("source", "title", "description", "language", "sensitive_properties")

    def __init__(
        self,
        *,
        source: str,
        title: str | None = None,
        description: str | None = None,
        language: str | None = None,
        should_translate: bool | None = None,
        sensitive_properties: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.title = title
        self.description = description
        self.language = language
        self.should_translate = should_translate
        self.sensitive_properties = sensitive_properties
        self._check_if_exists(
            {
                "title": title,
                "description": description,
                "language": language,
                "should_translate": should_translate,
                "sensitive_properties": sensitive_properties,
            }
        )

    def _fields(self) -> dict[str, Any]:
        """The API's source fields from the (rendered) arguments."""
        if isinstance(self.sensitive_properties, str):
            raise ValueError(f"sensitive_properties must be a list, got the string {self.sensitive_properties!r}")
        return {
            "title": self.title,
            "description": self.description,
            "language": self.language,
            "should_translate": self.should_translate,
            "sensitive_properties": list(self.sensitive_properties) if self.sensitive_properties is not None else None,
        }

    def _ensure(self) -> EnsuredObject:
        split_full_name(self.source, "source")
        return ensure_source(self.hook, self.source, if_exists=self.if_exists, **self._fields())


def label_def(definition: LabelDef) -> dict[str, Any]:
    """A label definition as the API takes it: ``"A > B"`` becomes ``{"name": "A > B"}``.

    :raises ValueError: for anything but a non-empty name or an object with one.
    """
    if isinstance(definition, str):
        found: dict[str, Any] = {"name": definition}
    elif isinstance(definition, Mapping):
        found = dict(definition)
    else:
        raise ValueError(f"a label definition is a name or {{'name': ...}}, got {definition!r}")
    if not isinstance(found.get("name"), str) or not found["name"].strip():
        raise ValueError(f"a label definition needs a non-empty 'name', got {definition!r}")
    return found


def label_groups(groups: Mapping[str, Sequence[LabelDef]] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Label groups as the API takes them, from ``{"group": [labels]}`` or the API's list form.

    :raises ValueError: for a group without a name.
    """
    pairs: list[tuple[Any, Any]]
    if isinstance(groups, Mapping):
        pairs = list(groups.items())
    elif isinstance(groups, str):
        raise ValueError(f"label_groups must be a mapping or a list, got the string {groups!r}")
    else:
        pairs = [(group.get("name"), group.get("label_defs") or []) for group in groups]
    out = []
    for name, defs in pairs:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a label group needs a non-empty name, got {name!r}")
        out.append({"name": name, "label_defs": [label_def(d) for d in defs]})
    return out


class CommunicationsMiningCreateDatasetOperator(_CreateOperator):
    """Create a dataset over sources unless it exists.

    Routes: ``GET /api/v1/sources/...`` for each source given by name, ``GET
    /api/v1/datasets/<project>/<dataset>``, then ``PUT`` to create or ``POST`` to update it
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/datasets,
    https://developers.reinfer.io/api/reference/datasets). The project and the sources must exist.

    :param dataset: ``"project/dataset"``. Templated.
    :param sources: its sources (``list[str]``), each ``"project/source"`` or a source id
        (``"id:<id>"`` or the bare id). Templated.
    :param title: its title (``str``). Templated.
    :param description: its description (``str``). Templated.
    :param has_sentiment: whether labels carry a sentiment (``bool``, API default ``True``).
    :param model_family: e.g. ``"english"`` (API default) or ``"german"``.
    :param label_defs: labels of the ``default`` group: names (``"Billing > Refund"``) or the
        API's objects (``{"name", "title", "description"}``). Templated.
    :param label_groups: label groups, as ``{"group name": [labels as in label_defs]}`` or the
        API's list ``[{"name": ..., "label_defs": [...]}]``. Templated.
    :param entity_defs: entity definitions, the API's objects (``[{"name": "order_id", "title":
        "Order id", "inherits_from": ["id"], "trainable": True}]``). Templated.
    :param if_exists: ``"ignore"`` (default), ``"fail"`` or ``"update"`` (``sources``, ``title``,
        ``description`` and ``entity_defs`` only). An existing dataset "equals what was asked"
        when it holds every asked label and entity (with the fields given), whatever else it holds.
    :return: (XCom) the dataset (``id``, ``owner``, ``name``, ``title``, ``source_ids``,
        ``has_sentiment``, ``label_groups``, ``entity_defs``, ...) with ``outcome`` and ``differences``.
    :raises ValueError: (DAG parsing) an unknown ``if_exists``, ``"update"`` with a field set at
        creation only, or a malformed label definition.
    :raises AirflowFailException: it exists and ``if_exists="fail"``.
    :raises CommunicationsMiningNotFoundError: a source does not exist.
    :raises CommunicationsMiningBadRequestError: the project does not exist, or a field is invalid.
    """

    kind = "dataset"
    template_fields: Sequence[str] = (
        "dataset",
        "sources",
        "title",
        "description",
        "label_defs",
        "label_groups",
        "entity_defs",
    )

    def __init__(
        self,
        *,
        dataset: str,
        sources: Sequence[str] | None = None,
        title: str | None = None,
        description: str | None = None,
        has_sentiment: bool | None = None,
        model_family: str | None = None,
        label_defs: Sequence[LabelDef] | None = None,
        label_groups: Mapping[str, Sequence[LabelDef]] | Sequence[Mapping[str, Any]] | None = None,
        entity_defs: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.sources = sources
        self.title = title
        self.description = description
        self.has_sentiment = has_sentiment
        self.model_family = model_family
        self.label_defs = label_defs
        self.label_groups = label_groups
        self.entity_defs = entity_defs
        self._check_if_exists(
            {
                "source_ids": sources,
                "title": title,
                "description": description,
                "has_sentiment": has_sentiment,
                "model_family": model_family,
                "label_defs": label_defs,
                "label_groups": label_groups,
                "entity_defs": entity_defs,
            }
        )

    def _fields(self) -> dict[str, Any]:
        """The API's dataset fields from the (rendered) arguments."""
        for name in ("sources", "label_defs", "entity_defs"):
            if isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a list, got the string {getattr(self, name)!r}")
        return {
            "title": self.title,
            "description": self.description,
            "has_sentiment": self.has_sentiment,
            "model_family": self.model_family,
            "label_defs": [label_def(d) for d in self.label_defs] if self.label_defs is not None else None,
            "label_groups": label_groups(self.label_groups) if self.label_groups is not None else None,
            "entity_defs": [dict(d) for d in self.entity_defs] if self.entity_defs is not None else None,
        }

    def _ensure(self) -> EnsuredObject:
        split_full_name(self.dataset, "dataset")
        fields = self._fields()
        return ensure_dataset(self.hook, self.dataset, sources=self.sources, if_exists=self.if_exists, **fields)


def _given(value: Any) -> bool:
    """Whether a (possibly rendered) argument holds a value: ``None``, ``""`` and ``"None"`` do not."""
    return value not in (None, "", "None")


class CommunicationsMiningCreateStreamOperator(_CreateOperator):
    """Create a stream unless it exists, on a pinned model version or the version behind a tag.

    Routes: ``GET /api/v1/datasets/<project>/<dataset>/model-tags`` when ``model_tag`` is given
    (legacy-documented, needs "Model Admin": https://developers.reinfer.io/api/reference/datasets),
    ``GET .../streams/<stream>``, then ``PUT /api/v1/datasets/<project>/<dataset>/streams``, which
    creates a stream or replaces its definition
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/create-a-stream,
    https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/update-a-stream).
    An update keeps the stream's position: nothing is redelivered or skipped.

    :param dataset: ``"project/dataset"``. Templated.
    :param stream: the stream name, ``[A-Za-z0-9_-]{1,256}``. Templated.
    :param model_version: the pinned model version whose predictions results carry (``int``).
        Templated.
    :param model_tag: instead of ``model_version``, ``"live"`` or ``"staging"``: resolved to its
        version when the task runs, so with ``if_exists="update"`` the stream follows the tag.
        Templated.
    :param label_thresholds: ``{"Parent > Child": 0.6}``: only these labels, at or above their
        thresholds (0 to 1), are attached to results; needs a model. Templated.
    :param comment_filter: the API's comment filter, e.g. ``{"sources": [source ids],
        "user_properties": {"string:Channel": {"one_of": ["email"]}}}``. Templated.
    :param title: its title (``str``). Templated.
    :param description: its description (``str``). Templated.
    :param if_exists: ``"ignore"`` (default), ``"fail"`` or ``"update"`` (any field; fields not
        given keep their values).
    :return: (XCom) the stream (``id``, ``dataset_id``, ``name``, ``title``, ``comment_filter``,
        ``model``: ``{"version", "label_thresholds"}``, ...) with ``outcome`` and ``differences``.
    :raises ValueError: (DAG parsing) an unknown ``if_exists``, both ``model_version`` and
        ``model_tag``, or ``label_thresholds`` without a model.
    :raises AirflowFailException: it exists and ``if_exists="fail"``, or the tag is not set.
    :raises CommunicationsMiningNotFoundError: the dataset does not exist.
    :raises CommunicationsMiningBadRequestError: the model version is not pinned, or a field is invalid.
    """

    kind = "stream"
    template_fields: Sequence[str] = (
        "dataset",
        "stream",
        "model_version",
        "model_tag",
        "label_thresholds",
        "comment_filter",
        "title",
        "description",
    )

    def __init__(
        self,
        *,
        dataset: str,
        stream: str,
        model_version: int | str | None = None,
        model_tag: str | None = None,
        label_thresholds: Mapping[str, float] | None = None,
        comment_filter: Mapping[str, Any] | None = None,
        title: str | None = None,
        description: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if _given(model_version) and _given(model_tag):
            raise ValueError("give model_version or model_tag, not both")
        if label_thresholds and not (_given(model_version) or model_tag is not None):
            raise ValueError("label_thresholds apply to a model's predictions: give model_version or model_tag")
        self.dataset = dataset
        self.stream = stream
        self.model_version = model_version
        self.model_tag = model_tag
        self.label_thresholds = label_thresholds
        self.comment_filter = comment_filter
        self.title = title
        self.description = description
        self._check_if_exists({"title": title, "description": description, "comment_filter": comment_filter})

    def _version(self) -> int | None:
        if _given(self.model_version):
            return int(self.model_version)  # type: ignore[arg-type]
        if not _given(self.model_tag):
            return None
        try:
            version = self.hook.resolve_model_tag(self.dataset, str(self.model_tag))
        except CommunicationsMiningTagError as exc:
            raise AirflowFailException(f"{exc}: pin and tag a model first, or give model_version") from None
        self.log.info("Model tag %r of %s points to version %d", self.model_tag, self.dataset, version)
        return version

    def _ensure(self) -> EnsuredObject:
        split_full_name(self.dataset, "dataset")
        version = self._version()
        if self.label_thresholds and version is None:
            raise ValueError("label_thresholds apply to a model's predictions: give model_version or model_tag")
        return ensure_stream(
            self.hook,
            self.dataset,
            self.stream,
            model_version=version,
            label_thresholds=self.label_thresholds or None,
            comment_filter=self.comment_filter,
            title=self.title,
            description=self.description,
            if_exists=self.if_exists,
        )
