"""The emulator's update routes: what each takes, what it refuses, and the label taxonomy it keeps."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.conftest import TOKEN, make_record

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def call(emulator, method: str, path: str, body: dict | None = None) -> requests.Response:
    return requests.request(method, f"{emulator.url}/{path}", json=body, headers=AUTH, timeout=30)


def test_a_project_is_updated_by_post(emulator, workspace):
    path = f"api/_private/projects/{workspace.project}"
    before = call(emulator, "GET", path).json()["project"]
    answer = call(emulator, "POST", path, {"project": {"title": "Help desk", "description": "Tickets"}})
    assert answer.status_code == 200
    project = call(emulator, "GET", path).json()["project"]
    assert answer.json()["project"] == project
    assert (project["title"], project["description"], project["id"]) == ("Help desk", "Tickets", before["id"])
    assert project["updated_at"] >= before["updated_at"] and project["created_at"] == before["created_at"]


def test_a_project_update_refuses_unknown_fields_and_missing_projects(emulator, workspace):
    refused = call(emulator, "POST", f"api/_private/projects/{workspace.project}", {"project": {"name": "other"}})
    assert refused.status_code == 400 and "unknown field(s) name" in refused.json()["message"]
    missing = call(emulator, "POST", f"api/_private/projects/p{uuid.uuid4().hex[:8]}", {"project": {"title": "x"}})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("route", "field"),
    [
        ("source", {"language": "de"}),
        ("source", {"_kind": "chat"}),
        ("dataset", {"has_sentiment": False}),
        ("dataset", {"model_family": "german"}),
        ("dataset", {"label_groups": [{"name": "Tone", "label_defs": [{"name": "Angry"}]}]}),
        ("dataset", {"label_defs": [{"name": "Angry"}]}),
    ],
)
def test_updates_refuse_fields_set_at_creation_only(emulator, workspace, route, field):
    path = f"api/v1/sources/{workspace.source}" if route == "source" else f"api/v1/datasets/{workspace.dataset}"
    before = call(emulator, "GET", path).json()[route]
    answer = call(emulator, "POST", path, {route: field})
    assert answer.status_code == 400 and f"unknown field(s) {next(iter(field))}" in answer.json()["message"]
    assert call(emulator, "GET", path).json()[route] == before


def test_updates_change_the_fields_they_take(emulator, workspace):
    source = call(emulator, "POST", f"api/v1/sources/{workspace.source}", {"source": {"should_translate": True}})
    assert source.json()["source"]["should_translate"] is True
    dataset = call(emulator, "POST", f"api/v1/datasets/{workspace.dataset}", {"dataset": {"description": "All"}})
    assert dataset.json()["dataset"]["description"] == "All"


def test_a_dataset_keeps_its_label_groups_and_learns_labels_into_the_default_group(emulator, hook, workspace):
    name = f"{workspace.project}/taxonomy"
    body = {
        "dataset": {
            "source_ids": [workspace.source_id],
            "label_defs": [{"name": "Billing > Refund", "title": "Refund"}],
            "label_groups": [{"name": "Tone", "label_defs": [{"name": "Angry", "description": "Shouting"}]}],
        }
    }
    assert call(emulator, "PUT", f"api/v1/datasets/{name}", body).status_code == 200
    hook.sync_comments(workspace.source, [make_record("c1", "2026-10-01T00:00:00Z")["comment"]])
    hook.update_annotations(
        name, f"{workspace.source_id}.c1", labelling=[{"group": "default", "assigned": [{"name": "Card"}]}]
    )
    dataset = call(emulator, "GET", f"api/v1/datasets/{name}").json()["dataset"]
    groups = {
        g["name"]: [(d["name"], d["title"], d["description"]) for d in g["label_defs"]] for g in dataset["label_groups"]
    }
    assert groups == {
        "default": [("Billing > Refund", "Refund", ""), ("Card", "Card", "")],
        "Tone": [("Angry", "Angry", "Shouting")],
    }
    assert dataset["label_defs"] == dataset["label_groups"][0]["label_defs"]


def test_a_label_group_needs_a_name(emulator, workspace):
    body = {"dataset": {"source_ids": [workspace.source_id], "label_groups": [{"label_defs": [{"name": "A"}]}]}}
    answer = call(emulator, "PUT", f"api/v1/datasets/{workspace.project}/unnamed-group", body)
    assert answer.status_code == 400 and "label_groups[0].name is required" in answer.json()["message"]
