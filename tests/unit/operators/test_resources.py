"""Set-up operators (project, source, dataset, stream) with ``if_exists``, over real HTTP to the emulator,
and the ``cm_setup`` example DAG end to end."""

from __future__ import annotations

import uuid

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm.common.if_exists import ensure_project, ensure_source
from airflow_provider_cm.exceptions import CommunicationsMiningConflictError, CommunicationsMiningNotFoundError
from airflow_provider_cm.operators.resources import (
    CommunicationsMiningCreateDatasetOperator,
    CommunicationsMiningCreateProjectOperator,
    CommunicationsMiningCreateSourceOperator,
    CommunicationsMiningCreateStreamOperator,
)
from tests.conftest import make_record
from tests.system.test_example_dags import load_dag, xcom_values

TRAINING = [
    ("my card was stolen yesterday", "Card > Lost"),
    ("I lost my card on the train", "Card > Lost"),
    ("I want a refund for this charge", "Billing > Refund"),
    ("refund the double payment please", "Billing > Refund"),
]


def unique(prefix: str = "p") -> str:
    return prefix + uuid.uuid4().hex[:10]


def run(operator, context):
    return operator.execute(context)


# -- projects ---------------------------------------------------------------------------------------


def project_op(name: str, **kwargs):
    return CommunicationsMiningCreateProjectOperator(task_id="create_project", project=name, **kwargs)


def test_project_twice_with_ignore_leaves_one_project(hook, context, capfd):
    name = unique()
    first = run(project_op(name, title="Support"), context)
    assert first["outcome"] == "created" and first["name"] == name and first["title"] == "Support"
    capfd.readouterr()
    second = run(project_op(name, title="Support"), context)
    assert second["outcome"] == "left_alone" and second["differences"] == {}
    assert second["id"] == first["id"]
    assert f"project {name} exists and equals what was asked; left alone" in capfd.readouterr().out
    assert [p["name"] for p in hook.list_projects()].count(name) == 1


def test_project_that_differs_is_left_alone_and_the_difference_logged(hook, context, capfd):
    name = unique()
    run(project_op(name, title="Support"), context)
    capfd.readouterr()
    result = run(project_op(name, title="Help desk"), context)
    assert result["outcome"] == "left_alone"
    assert result["differences"] == {"title": {"asked": "Help desk", "found": "Support"}}
    assert "differs from what was asked: title ('Help desk' asked, 'Support' found)" in capfd.readouterr().out
    assert hook.get_project(name)["title"] == "Support"


def test_project_fail_raises_on_the_second_run(hook, context):
    name = unique()
    run(project_op(name, if_exists="fail"), context)
    with pytest.raises(AirflowFailException, match="already exists"):
        run(project_op(name, title="Other", if_exists="fail"), context)
    assert hook.get_project(name)["title"] == ""


def test_project_update_changes_title_and_description(hook, context):
    name = unique()
    run(project_op(name, title="Support"), context)
    result = run(project_op(name, title="Help desk", description="Tickets", if_exists="update"), context)
    assert result["outcome"] == "updated" and set(result["differences"]) == {"title", "description"}
    found = hook.get_project(name)
    assert (
        (found["title"], found["description"]) == ("Help desk", "Tickets") == (result["title"], result["description"])
    )
    assert run(project_op(name, title="Help desk", if_exists="update"), context)["outcome"] == "left_alone"


def test_if_exists_must_be_a_known_value():
    with pytest.raises(ValueError, match="if_exists must be one of 'ignore', 'fail', 'update', got 'skip'"):
        project_op("x", if_exists="skip")


# -- sources ----------------------------------------------------------------------------------------


def source_op(source: str, **kwargs):
    return CommunicationsMiningCreateSourceOperator(task_id="create_source", source=source, **kwargs)


def test_source_twice_with_ignore_leaves_one_source(hook, context):
    project = unique()
    hook.create_project(project)
    source = f"{project}/inbox"
    first = run(source_op(source, title="Inbox", language="en", sensitive_properties=["string:Email"]), context)
    second = run(source_op(source, title="Inbox", language="en", sensitive_properties=["string:Email"]), context)
    assert (first["outcome"], second["outcome"]) == ("created", "left_alone")
    assert second["differences"] == {} and second["id"] == first["id"]
    assert [s["name"] for s in hook.list_sources(project)] == ["inbox"]


def test_source_fail_and_update(hook, context):
    project = unique()
    hook.create_project(project)
    source = f"{project}/inbox"
    run(source_op(source, title="Inbox"), context)
    with pytest.raises(AirflowFailException, match=f"source {source} already exists"):
        run(source_op(source, if_exists="fail"), context)
    result = run(
        source_op(source, title="Support inbox", should_translate=True, sensitive_properties=["x"], if_exists="update"),
        context,
    )
    assert result["outcome"] == "updated"
    assert set(result["differences"]) == {"title", "should_translate", "sensitive_properties"}
    found = hook.get_source(source)
    assert (found["title"], found["should_translate"], found["sensitive_properties"]) == ("Support inbox", True, ["x"])


def test_source_update_of_language_is_refused_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match="cannot change language of an existing source"):
        source_op("p/s", language="de", if_exists="update")


def test_source_in_a_missing_project_fails_with_the_api_error(context):
    with pytest.raises(Exception, match="does not exist"):
        run(source_op(f"{unique()}/inbox"), context)


# -- datasets ---------------------------------------------------------------------------------------


def dataset_op(dataset: str, **kwargs):
    return CommunicationsMiningCreateDatasetOperator(task_id="create_dataset", dataset=dataset, **kwargs)


@pytest.fixture
def two_sources(hook):
    project = unique()
    hook.create_project(project)
    ids = [hook.create_source(f"{project}/{name}")["id"] for name in ("inbox", "chat")]
    return project, ids


GROUPS = {"default": ["Billing > Refund", {"name": "Card > Lost", "title": "Lost card"}], "Tone": ["Angry"]}


def test_dataset_twice_with_ignore_leaves_one_dataset(hook, context, two_sources):
    project, (inbox_id, chat_id) = two_sources
    dataset = f"{project}/support"
    asked = {
        "sources": [f"{project}/inbox", chat_id],
        "title": "Support",
        "has_sentiment": False,
        "label_groups": GROUPS,
        "entity_defs": [{"name": "order_id", "title": "Order id", "inherits_from": [], "trainable": True}],
    }
    first = run(dataset_op(dataset, **asked), context)
    assert first["outcome"] == "created"
    assert first["source_ids"] == [inbox_id, chat_id] and first["has_sentiment"] is False
    groups = {g["name"]: {d["name"]: d["title"] for d in g["label_defs"]} for g in first["label_groups"]}
    assert groups == {
        "default": {"Billing > Refund": "Billing > Refund", "Card > Lost": "Lost card"},
        "Tone": {"Angry": "Angry"},
    }
    assert [e["name"] for e in first["entity_defs"]] == ["order_id"]
    second = run(dataset_op(dataset, **asked), context)
    assert second["outcome"] == "left_alone" and second["differences"] == {} and second["id"] == first["id"]
    assert [d["name"] for d in hook.list_datasets(project)] == ["support"]


def test_dataset_that_differs_reports_each_field(hook, context, two_sources):
    project, (inbox_id, chat_id) = two_sources
    dataset = f"{project}/support"
    run(dataset_op(dataset, sources=[f"{project}/inbox"], label_defs=["A"]), context)
    result = run(dataset_op(dataset, sources=[f"id:{chat_id}"], label_defs=["A", "B"], has_sentiment=False), context)
    assert result["outcome"] == "left_alone"
    assert set(result["differences"]) == {"source_ids", "label_defs", "has_sentiment"}
    assert result["differences"]["source_ids"] == {"asked": [chat_id], "found": [inbox_id]}
    assert hook.get_dataset(dataset)["source_ids"] == [inbox_id]


def test_dataset_fail_and_update(hook, context, two_sources):
    project, (inbox_id, chat_id) = two_sources
    dataset = f"{project}/support"
    run(dataset_op(dataset, sources=[f"{project}/inbox"], title="Support"), context)
    with pytest.raises(AirflowFailException, match="already exists"):
        run(dataset_op(dataset, sources=[f"{project}/inbox"], if_exists="fail"), context)
    result = run(
        dataset_op(dataset, sources=[f"{project}/inbox", f"{project}/chat"], title="All", if_exists="update"), context
    )
    assert result["outcome"] == "updated" and set(result["differences"]) == {"source_ids", "title"}
    found = hook.get_dataset(dataset)
    assert (sorted(found["source_ids"]), found["title"]) == (sorted([inbox_id, chat_id]), "All")


@pytest.mark.parametrize("field", [{"has_sentiment": True}, {"label_groups": GROUPS}, {"model_family": "german"}])
def test_dataset_update_of_creation_only_fields_is_refused_when_the_dag_is_parsed(field):
    name = next(iter(field))
    with pytest.raises(ValueError, match=f"cannot change {name} of an existing dataset"):
        dataset_op("p/d", if_exists="update", **field)


def test_dataset_over_a_missing_source_names_it(hook, context, two_sources):
    project, _ = two_sources
    with pytest.raises(CommunicationsMiningNotFoundError, match=f"source '{project}/nope' does not exist"):
        run(dataset_op(f"{project}/support", sources=[f"{project}/nope"]), context)
    with pytest.raises(CommunicationsMiningNotFoundError):
        hook.get_dataset(f"{project}/support")


# -- streams ----------------------------------------------------------------------------------------


@pytest.fixture
def live_dataset(workspace, hook, emulator):
    """A workspace whose dataset has a model pinned as version 1 and tagged live."""
    records = [make_record(f"t{i}", "2026-10-01T00:00:00Z", text, label) for i, (text, label) in enumerate(TRAINING)]
    hook.sync_comments(workspace.source, [r["comment"] for r in records])
    for record in records:
        uid = f"{workspace.source_id}.{record['comment']['id']}"
        hook.update_annotations(workspace.dataset, uid, labelling=record["labelling"])
    assert emulator.admin("POST", f"datasets/{workspace.dataset}/models", {"tag": "live"})["version"] == 1
    return workspace


def stream_op(dataset: str, **kwargs):
    kwargs.setdefault("stream", "new-messages")
    return CommunicationsMiningCreateStreamOperator(task_id="create_stream", dataset=dataset, **kwargs)


def test_stream_on_a_model_tag_twice_with_ignore_leaves_one_stream(hook, context, live_dataset):
    ws = live_dataset
    asked = {
        "model_tag": "live",
        "label_thresholds": {"Card > Lost": 0.6},
        "comment_filter": {"sources": [ws.source_id]},
    }
    first = run(stream_op(ws.dataset, **asked), context)
    assert first["outcome"] == "created"
    assert first["model"] == {"version": 1, "label_thresholds": [{"name": ["Card", "Lost"], "threshold": 0.6}]}
    assert first["comment_filter"] == {"sources": [ws.source_id]}
    second = run(stream_op(ws.dataset, **asked), context)
    assert second["outcome"] == "left_alone" and second["differences"] == {}
    assert [s["name"] for s in hook.list_streams(ws.dataset)] == ["new-messages"]


def test_stream_follows_the_tag_with_update_and_keeps_its_position(hook, context, emulator, live_dataset):
    ws = live_dataset
    run(stream_op(ws.dataset, model_tag="live", title="New"), context)
    hook.sync_comments(ws.source, [make_record("n1", "2026-10-25T00:00:00Z", "card lost again")["comment"]])
    batch = hook.fetch_stream(ws.dataset, "new-messages", size=8)
    hook.advance_stream(ws.dataset, "new-messages", batch["sequence_id"])
    assert emulator.admin("POST", f"datasets/{ws.dataset}/models", {"tag": "live"})["version"] == 2

    ignored = run(stream_op(ws.dataset, model_tag="live"), context)
    assert ignored["outcome"] == "left_alone" and ignored["model"]["version"] == 1
    assert ignored["differences"]["model"]["found"]["version"] == 1
    assert ignored["differences"]["model"]["asked"]["version"] == 2

    updated = run(stream_op(ws.dataset, model_tag="live", if_exists="update"), context)
    assert updated["outcome"] == "updated" and set(updated["differences"]) == {"model"}
    found = hook.get_stream(ws.dataset, "new-messages")
    assert found["model"]["version"] == 2 and found["title"] == "New"  # fields not asked keep their values
    assert hook.fetch_stream(ws.dataset, "new-messages", size=8)["results"] == []  # nothing redelivered


def test_stream_fail_raises_on_the_second_run(hook, context, live_dataset):
    ws = live_dataset
    run(stream_op(ws.dataset, model_version=1, if_exists="fail"), context)
    with pytest.raises(AirflowFailException, match="already exists"):
        run(stream_op(ws.dataset, if_exists="fail", title="Other"), context)
    assert hook.get_stream(ws.dataset, "new-messages")["title"] == ""


def test_stream_without_a_model_and_with_an_unknown_tag(hook, context, workspace):
    plain = run(stream_op(workspace.dataset, stream="plain", model_tag=""), context)
    assert plain["outcome"] == "created" and "model" not in plain
    with pytest.raises(AirflowFailException, match="has no model tagged 'live'"):
        run(stream_op(workspace.dataset, stream="tagged", model_tag="live"), context)
    assert [s["name"] for s in hook.list_streams(workspace.dataset)] == ["plain"]


def test_stream_arguments_are_checked_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match="not both"):
        stream_op("p/d", model_version=1, model_tag="live")
    with pytest.raises(ValueError, match="give model_version or model_tag"):
        stream_op("p/d", label_thresholds={"A": 0.5})


# -- the example DAG --------------------------------------------------------------------------------


def test_cm_setup_dag_creates_everything_from_nothing_then_changes_nothing(hook, emulator, airflow_db, monkeypatch):
    project = unique()
    monkeypatch.setenv("CM_SOURCE", f"{project}/inbox")
    monkeypatch.setenv("CM_DATASET", f"{project}/support")
    monkeypatch.setenv("CM_STREAM", "new-messages")
    monkeypatch.setenv("CM_LABELS", "Billing > Refund; Card > Lost")
    monkeypatch.delenv("CM_STREAM_MODEL_TAG", raising=False)
    tasks = ("create_project", "create_source", "create_dataset", "create_stream")

    first = load_dag("cm_setup").test()
    assert first.state == "success"
    created = xcom_values(first)
    assert [created[task]["outcome"] for task in tasks] == ["created"] * 4
    source_id = created["create_source"]["id"]
    assert created["create_dataset"]["source_ids"] == [source_id]
    assert created["create_stream"]["comment_filter"] == {"sources": [source_id]}

    second = load_dag("cm_setup").test()
    assert second.state == "success"
    again = xcom_values(second)
    assert [again[task]["outcome"] for task in tasks] == ["left_alone"] * 4
    assert all(again[task]["differences"] == {} for task in tasks)
    assert [again[task]["id"] for task in tasks] == [created[task]["id"] for task in tasks]
    assert [p["name"] for p in hook.list_projects()].count(project) == 1
    assert [s["name"] for s in hook.list_sources(project)] == ["inbox"]
    assert [d["name"] for d in hook.list_datasets(project)] == ["support"]
    labels = [d["name"] for d in hook.get_dataset(f"{project}/support")["label_defs"]]
    assert labels == ["Billing > Refund", "Card > Lost"]
    assert [s["name"] for s in hook.list_streams(f"{project}/support")] == ["new-messages"]

    # Once a model is pinned and tagged live, a run with CM_STREAM_MODEL_TAG=live points the stream at it.
    dataset = f"{project}/support"
    records = [make_record(f"t{i}", "2026-10-01T00:00:00Z", text, label) for i, (text, label) in enumerate(TRAINING)]
    hook.sync_comments(f"{project}/inbox", [r["comment"] for r in records])
    for record in records:
        hook.update_annotations(dataset, f"{source_id}.{record['comment']['id']}", labelling=record["labelling"])
    assert emulator.admin("POST", f"datasets/{dataset}/models", {"tag": "live"})["version"] == 1
    monkeypatch.setenv("CM_STREAM_MODEL_TAG", "live")
    third = load_dag("cm_setup").test()
    assert third.state == "success"
    tagged = xcom_values(third)
    assert [tagged[task]["outcome"] for task in tasks] == ["left_alone"] * 3 + ["updated"]
    assert tagged["create_stream"]["model"] == {"version": 1, "label_thresholds": []}
    assert hook.get_stream(dataset, "new-messages")["comment_filter"] == {"sources": [source_id]}


def test_a_string_where_a_list_belongs_is_refused_before_anything_is_sent(hook, context, two_sources):
    project, _ = two_sources
    with pytest.raises(ValueError, match="label_defs must be a list"):
        run(dataset_op(f"{project}/support", sources=[f"{project}/inbox"], label_defs="Billing"), context)
    with pytest.raises(ValueError, match="sources must be a list"):
        run(dataset_op(f"{project}/support", sources=f"{project}/inbox"), context)
    assert hook.list_datasets(project) == []


# -- the hook's set-up methods ----------------------------------------------------------------------


@pytest.fixture
def first_read_misses(emulator):
    """Make the next GET of a path answer 404, as if the object appeared between the read and the create."""

    injected = emulator.stats()["faults_injected"].get("status", 0)

    def arm(path: str) -> None:
        rule = {"kind": "status", "status": 404, "method": "GET", "path_contains": path, "count": 1}
        emulator.admin("POST", "faults", {"faults": [rule]})

    yield arm
    emulator.admin("DELETE", "faults")
    assert emulator.stats()["faults_injected"].get("status", 0) == injected + 1, "the read did not miss"


def test_an_object_created_between_the_read_and_the_create_is_treated_as_existing(hook, first_read_misses):
    project = unique()
    hook.create_project(project, title="First")
    first_read_misses(f"/projects/{project}")
    ensured = ensure_project(hook, project, title="Second", if_exists="update")
    assert ensured["outcome"] == "updated" and ensured["differences"]["title"]["found"] == "First"
    assert hook.get_project(project)["title"] == "Second"


def test_fail_raises_the_conflict_when_the_create_finds_the_object(hook, context, first_read_misses):
    project = unique()
    hook.create_project(project)
    source = hook.create_source(f"{project}/inbox")
    first_read_misses(f"/sources/{project}/inbox")
    with pytest.raises(CommunicationsMiningConflictError, match="already exists") as raised:
        ensure_source(hook, f"{project}/inbox", title="Other", if_exists="fail")
    assert raised.value.status_code == 409
    assert hook.get_source(f"{project}/inbox") == source
