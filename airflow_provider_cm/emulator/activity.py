"""A day of a tenant's life, replayed on a dataset: what a warehouse loaded yesterday must catch up with.

``POST /_emulator/datasets/<p>/<d>/activity`` (emulator-only, see :mod:`.admin`) with
``{"day": "2026-10-05", "seed": 7, "new_comments": 20, "relabels": 5, "deletions": 2,
"late_uploads": 3, "late_by_days": 7, "retrain": true, "tag": "live", "labelled_share": 0.5}``
replays, in this order and all from ``seed`` and ``day`` alone (the same call on the same tenant
gives the same tenant):

1. **new comments**: copies of the texts and user properties of comments the dataset already
   holds, with new ids ``act-<YYYYMMDD>-<n>``, timestamps inside ``day`` and uploaded on it
   (``created_at``); ``labelled_share`` of them arrive with the labels of the comment copied;
2. **late uploads**: the same, ids ``late-<YYYYMMDD>-<n>``, uploaded on ``day`` but with timestamps
   ``late_by_days`` days earlier: a window already loaded gains comments;
3. **relabels**: comments uploaded before ``day`` get another label of the dataset's taxonomy
   (assigned, with its sentiment and ``metadata`` ``{"user_id", "timestamp"}``);
4. **deletions**: comments uploaded before ``day`` (and not relabelled today) are deleted with
   their annotations;
5. **a retrain** (if ``retrain``): a new model version is trained on the labels as they now are,
   pinned and tagged ``tag``; every comment's exported predictions change to the new version's.

The emulator's clock for these changes is ``day``: ``created_at``, the labels' metadata times, the
version's ``trained_time`` and the tag's ``updated_at`` all lie inside it, so the replay is
deterministic. Each change goes through the :class:`~airflow_provider_cm.emulator.state.tenant.Tenant`
change methods (and is journaled like any other write). The answer names every uid it touched.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow_provider_cm.api.times import api_time
from airflow_provider_cm.emulator.errors import bad_request
from airflow_provider_cm.emulator.routes.comments import COMMENT, stored_form
from airflow_provider_cm.emulator.routes.model_versions import TAGS, train_version
from airflow_provider_cm.emulator.rules.checks import boolean, integer, number, obj, string
from airflow_provider_cm.emulator.state.records import Annotation, Comment, Dataset, Source
from airflow_provider_cm.emulator.state.store import Store

#: The most changes of one kind a day may hold (the emulator answers every uid it touched).
MAX_CHANGES = 10_000
#: Who the replayed labels are assigned by (their ``metadata.user_id``).
ACTIVITY_USER = "emulator-activity"

ACTIVITY_BODY = obj(
    {
        "day": string(min_len=10, max_len=10),
        "seed": integer(),
        "new_comments": integer(minimum=0, maximum=MAX_CHANGES),
        "late_uploads": integer(minimum=0, maximum=MAX_CHANGES),
        "late_by_days": integer(minimum=1, maximum=3650),
        "relabels": integer(minimum=0, maximum=MAX_CHANGES),
        "deletions": integer(minimum=0, maximum=MAX_CHANGES),
        "retrain": boolean(),
        "tag": string(choices=TAGS),
        "labelled_share": number(minimum=0, maximum=1),
        "source_id": string(min_len=1),
    },
    required=("day",),
    closed=True,
)


@dataclass(frozen=True)
class DayOfActivity:
    """What one replayed day holds (the counts of each kind of change, and whether it retrains)."""

    day: date
    seed: int = 0
    new_comments: int = 20
    late_uploads: int = 3
    late_by_days: int = 7
    relabels: int = 5
    deletions: int = 2
    retrain: bool = False
    tag: str = "live"
    labelled_share: float = 0.5
    source_id: str | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> DayOfActivity:
        """Read the admin route's body; 400 naming the field if it is wrong."""
        ACTIVITY_BODY(body, "body")
        try:
            day = date.fromisoformat(body["day"])
        except ValueError:
            raise bad_request(f"body.day must be a date YYYY-MM-DD, got {body['day']!r}") from None
        fields = {k: v for k, v in body.items() if k != "day"}
        return cls(day=day, **fields)


def _at(day: date, seconds: float) -> str:
    return api_time(datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(seconds=seconds))


def _comments(store: Store, dataset: Dataset) -> list[tuple[str, Source, Comment]]:
    """Every comment of the dataset's sources as ``(uid, source, comment)``, in uid order."""
    found: list[tuple[str, Source, Comment]] = []
    for source_id in dataset.source_ids:
        source = store.sources.get(source_id)
        if source is not None:
            found.extend((comment.uid, source, comment) for comment in source.comments.values())
    return sorted(found, key=lambda item: item[0])


def _assigned(dataset: Dataset, uid: str) -> list[dict[str, Any]]:
    annotation = dataset.annotations.get(uid)
    return annotation.assigned_labels() if annotation is not None else []


def _labelled(dataset: Dataset, uid: str, labels: list[dict[str, Any]], at: str) -> Annotation:
    old = dataset.annotations.get(uid) or Annotation()
    metadata = {"user_id": ACTIVITY_USER, "timestamp": at}
    assigned = [{**label, "metadata": metadata} for label in labels]
    return Annotation([{"group": "default", "assigned": assigned, "dismissed": []}], old.entities, old.moon_forms)


def _upload(
    store: Store,
    dataset: Dataset,
    rng: random.Random,
    source: Source,
    templates: list[tuple[str, Source, Comment]],
    plan: DayOfActivity,
    *,
    prefix: str,
    count: int,
    days_before: int,
) -> list[str]:
    uids = []
    stamp = plan.day.strftime("%Y%m%d")
    for n in range(count):
        template_uid, _, template = rng.choice(templates)
        seconds = rng.uniform(0, 86_000)
        comment: dict[str, Any] = {
            "id": f"{prefix}-{stamp}-{n:04d}",
            "timestamp": _at(plan.day - timedelta(days=days_before), seconds),
            "messages": template.fields["messages"],
        }
        for optional in ("user_properties", "thread_id"):
            if template.fields.get(optional):
                comment[optional] = template.fields[optional]
        COMMENT(comment, f"activity comment {comment['id']!r}")
        created_at = _at(plan.day, seconds + 60 if days_before == 0 else rng.uniform(0, 86_000))
        uid = f"{source.id}.{comment['id']}"
        billed = comment["id"] not in source.comments
        store.put_comment(source, Comment(stored_form(comment), uid, created_at))
        store.bill_comments(source, int(billed))
        labels = _assigned(dataset, template_uid)
        if labels and rng.random() < plan.labelled_share:
            store.put_annotation(dataset, uid, _labelled(dataset, uid, labels, created_at))
        uids.append(uid)
    return uids


def replay_day(store: Store, dataset: Dataset, plan: DayOfActivity) -> dict[str, Any]:
    """Replay one day of activity on ``dataset`` (see the module's description).

    :return: ``{"day", "created", "late", "relabelled", "deleted"}`` (the uids of each kind, in the
        order changed) and ``"model_version"`` (the version pinned by the retrain, or ``None``).
    :raises ApiError: 400 if the dataset holds no comment to copy, ``source_id`` is not one of its
        sources, or a retrain finds no label to train on.
    """
    rng = random.Random(f"{plan.seed}:{plan.day.isoformat()}")
    existing = _comments(store, dataset)
    if not existing:
        raise bad_request(f"dataset '{dataset.project}/{dataset.name}' has no comments to replay a day on")
    source_id = plan.source_id or dataset.source_ids[0]
    if source_id not in dataset.source_ids or source_id not in store.sources:
        raise bad_request(f"source id {source_id!r} is not a source of this dataset")
    source = store.sources[source_id]
    start = _at(plan.day, 0)
    older = [item for item in existing if item[2].created_at < start]
    created = _upload(store, dataset, rng, source, existing, plan, prefix="act", count=plan.new_comments, days_before=0)
    late = _upload(
        store,
        dataset,
        rng,
        source,
        existing,
        plan,
        prefix="late",
        count=plan.late_uploads,
        days_before=plan.late_by_days,
    )
    taxonomy = sorted({name for name in dataset.label_names if name})
    relabelled: list[str] = []
    if taxonomy and older:
        for uid, _, _ in rng.sample(older, min(plan.relabels, len(older))):
            current = {label["name"] for label in _assigned(dataset, uid)}
            choices = [name for name in taxonomy if name not in current] or taxonomy
            label = {"name": rng.choice(choices), "sentiment": rng.choice(("positive", "negative"))}
            store.put_annotation(dataset, uid, _labelled(dataset, uid, [label], _at(plan.day, rng.uniform(0, 86_000))))
            relabelled.append(uid)
    kept = set(relabelled)
    candidates = [item for item in older if item[0] not in kept]
    deleted = []
    for uid, comment_source, comment in rng.sample(candidates, min(plan.deletions, len(candidates))):
        store.delete_comment(comment_source, comment.id)
        deleted.append(uid)
    version = None
    if plan.retrain:
        version = train_version(store, dataset, plan.tag, at=_at(plan.day, 86_399))["version"]
    return {
        "day": plan.day.isoformat(),
        "created": created,
        "late": late,
        "relabelled": relabelled,
        "deleted": deleted,
        "model_version": version,
    }
