"""The emulator lives a tenant's month: the export's predictions, label metadata, deletions, retrains,
``predict-comments`` on a pinned version, and the replayed day of activity (deterministic from its seed)."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import TOKEN, new_workspace
from tests.tenant_month import build_tenant, export_all

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def tenant(hook, emulator, workspace):
    build_tenant(hook, emulator, workspace, 120)
    return workspace


def test_the_export_carries_the_latest_pinned_versions_predictions(hook, emulator, tenant):
    exported = export_all(hook, tenant)
    assert len(exported) == 120
    for item in exported:
        labels = item["predictions"]["labels"]
        assert labels, item["comment"]["id"]
        probabilities = [label["probability"] for label in labels]
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(
            0.01 <= p <= 1 and isinstance(label["name"], str) for p, label in zip(probabilities, labels, strict=True)
        )
        assert all(-1 <= label["sentiment"] <= 1 for label in labels if "sentiment" in label)
    # The model learnt its labels: the assigned leaf is the top prediction for most training comments.
    top = sum(
        item["predictions"]["labels"][0]["name"]
        in {label["name"] for label in item["annotations"]["labels"]["assigned"]}
        for item in exported
    )
    assert top >= 0.8 * len(exported)


def test_without_a_pinned_version_the_export_predicts_nothing(hook, workspace):
    hook.sync_comments(
        workspace.source, [{"id": "a", "timestamp": "2026-10-01T00:00:00Z", "messages": [{"body": {"text": "hi"}}]}]
    )
    assert export_all(hook, workspace)[0]["predictions"] == {"labels": []}


def test_label_metadata_is_kept_and_exported_on_the_label_as_assigned(hook, tenant):
    first = export_all(hook, tenant)[0]
    assigned = first["annotations"]["labels"]["assigned"]
    parent, child = assigned
    assert " > " not in parent["name"] and "metadata" not in parent
    assert child["metadata"] == {"user_id": "analyst", "timestamp": "2026-10-01T00:03:35Z"}
    read = hook.get_annotations(tenant.dataset, [first["comment"]["uid"]])[0]
    assert read["labelling"][0]["assigned"][0]["metadata"]["user_id"] == "analyst"


def test_a_retrain_tagged_live_changes_the_exported_predictions(hook, emulator, tenant):
    before = {item["comment"]["uid"]: item["predictions"] for item in export_all(hook, tenant)}
    uids = sorted(before)[:40]
    for uid in uids:  # relabel a third of the comments as one label: the next version learns it
        hook.update_annotations(
            tenant.dataset, uid, labelling=[{"group": "default", "assigned": [{"name": "Card > Lost"}]}]
        )
    pinned = emulator.admin("POST", f"datasets/{tenant.dataset}/models", {"tag": "live"})
    assert pinned["version"] == 2
    after = {item["comment"]["uid"]: item["predictions"] for item in export_all(hook, tenant)}
    assert sum(before[uid] != after[uid] for uid in before) > len(before) // 2
    assert hook.resolve_model_tag(tenant.dataset, "live") == 2


def test_predict_comments_predicts_stored_comments_on_the_version_asked(hook, emulator, tenant):
    uids = [item["comment"]["uid"] for item in export_all(hook, tenant)[:5]]
    url = f"{emulator.url}/api/v1/datasets/{tenant.dataset}/labellers/1/predict-comments"
    first = requests.post(url, json={"uids": uids, "threshold": 0.01}, headers=AUTH, timeout=30).json()["predictions"]
    assert [p["uid"] for p in first] == uids
    by_live = requests.post(
        url.replace("/1/", "/live/"), json={"uids": uids, "threshold": 0.01}, headers=AUTH, timeout=30
    )
    assert by_live.json()["predictions"] == first
    exported = {item["comment"]["uid"]: item["predictions"]["labels"] for item in export_all(hook, tenant)}
    for prediction in first:  # version 1 is the latest: the export's predictions are its predictions
        names = [" > ".join(label["name"]) for label in prediction["labels"]]
        assert names == [label["name"] for label in exported[prediction["uid"]]]


def test_a_deleted_comment_leaves_the_export_with_its_annotations(hook, emulator, tenant):
    victim = export_all(hook, tenant)[3]["comment"]
    requests.delete(
        f"{emulator.url}/api/v1/sources/{tenant.source}/comments", params={"id": victim["id"]}, headers=AUTH, timeout=30
    ).raise_for_status()
    assert victim["uid"] not in {item["comment"]["uid"] for item in export_all(hook, tenant)}


def day(emulator, workspace, **body):
    return emulator.admin("POST", f"datasets/{workspace.dataset}/activity", body)


def test_a_day_of_activity_changes_what_it_says(hook, emulator, tenant):
    before = {item["comment"]["uid"]: item for item in export_all(hook, tenant)}
    answer = day(
        emulator,
        tenant,
        day="2099-01-10",
        seed=3,
        new_comments=6,
        late_uploads=2,
        late_by_days=5,
        relabels=4,
        deletions=3,
        retrain=True,
    )
    after = {item["comment"]["uid"]: item for item in export_all(hook, tenant)}
    assert len(answer["created"]) == 6 and len(answer["late"]) == 2
    assert set(after) == (set(before) | set(answer["created"]) | set(answer["late"])) - set(answer["deleted"])
    assert len(answer["deleted"]) == 3 and not set(answer["deleted"]) & set(answer["relabelled"])
    for uid in answer["created"]:
        assert after[uid]["comment"]["timestamp"].startswith("2099-01-10")
        assert after[uid]["comment"]["created_at"].startswith("2099-01-10")
    for uid in answer["late"]:
        assert after[uid]["comment"]["timestamp"].startswith("2099-01-05")
        assert after[uid]["comment"]["created_at"].startswith("2099-01-10")
    for uid in answer["relabelled"]:
        assigned = after[uid]["annotations"]["labels"]["assigned"]
        assert assigned != before[uid]["annotations"]["labels"]["assigned"]
        leaf = assigned[-1]
        assert leaf["metadata"]["user_id"] == "emulator-activity" and leaf["metadata"]["timestamp"].startswith(
            "2099-01-10"
        )
    assert answer["model_version"] == 2 and hook.resolve_model_tag(tenant.dataset, "live") == 2
    changed = sum(before[uid]["predictions"] != after[uid]["predictions"] for uid in before if uid in after)
    assert changed > 0


def test_a_day_of_activity_is_the_same_from_the_same_seed(hook, emulator):
    exports, answers = [], []
    for _ in range(2):
        workspace = new_workspace(hook)
        build_tenant(hook, emulator, workspace, 60)
        answers.append(day(emulator, workspace, day="2099-02-01", seed=11, relabels=5, deletions=2, retrain=True))
        exports.append(export_all(hook, workspace))

    def comparable(items, source_id):
        out = []
        for item in items:
            comment = {k: v for k, v in item["comment"].items() if k not in ("uid", "source_id", "created_at")}
            created = item["comment"]["created_at"] if item["comment"]["id"].startswith(("act-", "late-")) else None
            out.append((comment, created, item["annotations"], item["predictions"]))
        return out

    strip = [
        {k: [uid.split(".", 1)[1] for uid in v] if isinstance(v, list) else v for k, v in a.items()} for a in answers
    ]
    assert strip[0] == strip[1]
    assert comparable(exports[0], None) == comparable(exports[1], None)
    other = day(emulator, new_workspace_with_tenant(hook, emulator), day="2099-02-01", seed=12, relabels=5, deletions=2)
    assert [u.split(".", 1)[1] for u in other["relabelled"]] != strip[0]["relabelled"]


def new_workspace_with_tenant(hook, emulator):
    workspace = new_workspace(hook)
    build_tenant(hook, emulator, workspace, 60)
    return workspace


def test_a_day_of_activity_refuses_a_bad_body(emulator, tenant):
    answer = requests.post(
        f"{emulator.url}/_emulator/datasets/{tenant.dataset}/activity",
        json={"day": "10/01/2026"},
        headers=AUTH,
        timeout=30,
    )
    assert answer.status_code == 400 and "day" in answer.json()["message"]
    unknown = requests.post(
        f"{emulator.url}/_emulator/datasets/{tenant.dataset}/activity",
        json={"day": "2026-10-01", "delete": 3},
        headers=AUTH,
        timeout=30,
    )
    assert unknown.status_code == 400 and "delete" in unknown.json()["message"]
