"""Streams, model tags and predictions: hook, operators, sensor and trigger over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException, TaskDeferralError

from airflow_provider_cm.exceptions import (
    CommunicationsMiningBadRequestError,
    CommunicationsMiningError,
    CommunicationsMiningModelDriftError,
    CommunicationsMiningNotFoundError,
    CommunicationsMiningTagError,
)
from airflow_provider_cm.hooks.communications_mining import version_for_tag
from airflow_provider_cm.operators.models import (
    CommunicationsMiningModelTagOperator,
    CommunicationsMiningPredictOperator,
)
from airflow_provider_cm.operators.streams import (
    CommunicationsMiningStreamAdvanceOperator,
    CommunicationsMiningStreamFetchOperator,
    CommunicationsMiningStreamResetOperator,
    CommunicationsMiningTagExceptionsOperator,
)
from airflow_provider_cm.sensors.streams import CommunicationsMiningStreamSensor
from airflow_provider_cm.triggers.streams import CommunicationsMiningStreamTrigger
from tests.conftest import FakeTaskInstance, make_record, read_jsonl, write_jsonl

TRAINING = [
    ("my card was stolen yesterday", "Card > Lost"),
    ("I lost my card on the train", "Card > Lost"),
    ("please block my lost card", "Card > Lost"),
    ("I want a refund for this charge", "Billing > Refund"),
    ("refund the double payment please", "Billing > Refund"),
    ("where is my refund for the order", "Billing > Refund"),
]


@pytest.fixture
def model_workspace(workspace, hook, emulator):
    """A workspace with labelled comments, a model pinned as version 1 and tagged live."""
    records = [make_record(f"t{i}", "2026-10-01T00:00:00Z", text, label) for i, (text, label) in enumerate(TRAINING)]
    hook.sync_comments(workspace.source, [r["comment"] for r in records])
    for record in records:
        uid = f"{workspace.source_id}.{record['comment']['id']}"
        hook.update_annotations(workspace.dataset, uid, labelling=record["labelling"])
    pinned = emulator.admin("POST", f"datasets/{workspace.dataset}/models", {"tag": "live"})
    assert pinned["version"] == 1
    return workspace


def upload_new(hook, workspace, texts, prefix="n", properties=None):
    comments = []
    for i, text in enumerate(texts):
        comment = make_record(f"{prefix}{i}", "2026-10-25T00:00:00Z", text)["comment"]
        if properties:
            comment["user_properties"] = properties[i]
        comments.append(comment)
    hook.sync_comments(workspace.source, comments)
    return comments


def test_stream_fetch_does_not_move_and_advance_is_idempotent(model_workspace, hook):
    ws = model_workspace
    hook.put_stream(ws.dataset, "s", model_version=1)
    upload_new(hook, ws, ["my card is lost", "refund me now", "card stolen"])
    first = hook.fetch_stream(ws.dataset, "s", size=2)
    again = hook.fetch_stream(ws.dataset, "s", size=2)
    assert (
        [r["comment"]["id"] for r in first["results"]] == ["n0", "n1"] == [r["comment"]["id"] for r in again["results"]]
    )
    top = max(first["results"][0]["labels"], key=lambda label: label["probability"])
    assert top["name"] == "Card"  # names are "Parent > Child" strings; parents sum their children
    hook.advance_stream(ws.dataset, "s", first["sequence_id"])
    hook.advance_stream(ws.dataset, "s", first["sequence_id"])  # harmless
    rest = hook.fetch_stream(ws.dataset, "s", size=10)
    assert [r["comment"]["id"] for r in rest["results"]] == ["n2"] and rest["is_end_sequence"]
    hook.advance_stream(ws.dataset, "s", rest["sequence_id"])
    assert hook.fetch_stream(ws.dataset, "s", size=10)["results"] == []


def test_stream_starts_at_creation_and_reset_replays(model_workspace, hook):
    ws = model_workspace
    upload_new(hook, ws, ["old message"], prefix="old")
    time.sleep(0.01)
    hook.put_stream(ws.dataset, "s", model_version=1)
    assert hook.fetch_stream(ws.dataset, "s", size=10)["results"] == []
    reset = hook.reset_stream(ws.dataset, "s", "2000-01-01T00:00:00Z")
    assert reset["sequence_id"] and reset["stream"]["name"] == "s"
    replayed = [r["comment"]["id"] for r in hook.fetch_stream(ws.dataset, "s", size=100)["results"]]
    assert "old0" in replayed and "t0" in replayed


def test_filters_thresholds_and_validation(model_workspace, hook):
    ws = model_workspace
    hook.put_stream(
        ws.dataset,
        "email-only",
        model_version=1,
        label_thresholds={"Card > Lost": 0.5},
        comment_filter={"user_properties": {"string:Channel": {"one_of": ["email"]}}},
    )
    channels = [{"string:Channel": c} for c in ("chat", "email", "chat")]
    upload_new(hook, ws, ["card lost", "my card was stolen", "refund"], properties=channels)
    batch = hook.fetch_stream(ws.dataset, "email-only", size=3)
    assert batch["filtered"] == 2 and [r["comment"]["id"] for r in batch["results"]] == ["n1"]
    assert [label["name"] for label in batch["results"][0]["labels"]] == ["Card > Lost"]
    with pytest.raises(CommunicationsMiningBadRequestError, match="not pinned"):
        hook.put_stream(ws.dataset, "bad", model_version=99)
    with pytest.raises(CommunicationsMiningBadRequestError, match="stream name"):
        hook.put_stream(ws.dataset, "bad name!", model_version=1)
    with pytest.raises(CommunicationsMiningNotFoundError):
        hook.fetch_stream(ws.dataset, "missing")
    assert [s["name"] for s in hook.list_streams(ws.dataset)] == ["email-only"]


def test_exceptions_tag_and_untag(model_workspace, hook, emulator):
    ws = model_workspace
    hook.put_stream(ws.dataset, "s", model_version=1)
    uid = f"{ws.source_id}.t0"
    hook.tag_exceptions(ws.dataset, "s", [uid], "No Prediction")
    hook.untag_exceptions(ws.dataset, "s", [uid])
    with pytest.raises(CommunicationsMiningNotFoundError):
        hook.tag_exceptions(ws.dataset, "s", [f"{ws.source_id}.missing"], "No Prediction")
    assert emulator.requests_to("PUT /api/v1/datasets/{project}/{name}/streams/{stream}/exceptions") >= 2


def test_model_tags_predict_and_billing(model_workspace, hook, emulator):
    ws = model_workspace
    assert hook.resolve_model_tag(ws.dataset, "live") == 1
    with pytest.raises(CommunicationsMiningTagError, match="no model tagged 'staging'"):
        hook.resolve_model_tag(ws.dataset, "staging")
    before = emulator.stats()["billed_predictions"]
    documents = [{"messages": [{"body": {"text": "I lost my card"}}]}, {"messages": [{"body": {"text": "refund"}}]}]
    predictions = hook.predict(ws.dataset, "live", documents, threshold="auto")
    assert emulator.stats()["billed_predictions"] - before == 2
    assert predictions[0]["labels"][0]["name"] == ["Card"] and "auto_thresholds" in predictions[0]["labels"][0]
    with pytest.raises(ValueError, match="4096"):
        hook.predict(ws.dataset, 1, documents * 2049)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ([{"name": "live", "version": 3}], 3),
        ([{"tag": "live", "version": "4"}], 4),
        ({"live": 5, "staging": 6}, 5),
        ({"live": {"version": 7}}, 7),
    ],
)
def test_tag_parser_is_tolerant(tags, expected):
    assert version_for_tag(tags, "live", "p/d") == expected


@pytest.mark.parametrize("tags", [None, "live=3", [{"name": "live", "version": None}], {"staging": 2}])
def test_tag_parser_errors_are_clear(tags):
    with pytest.raises(CommunicationsMiningTagError, match="p/d"):
        version_for_tag(tags, "live", "p/d")


# -- operators --------------------------------------------------------------------------------------


def test_fetch_without_advance_then_advance_operator(model_workspace, hook, tmp_path, context):
    ws = model_workspace
    hook.put_stream(ws.dataset, "s", model_version=1)
    upload_new(hook, ws, [f"lost card number {i}" for i in range(5)])
    fetch = CommunicationsMiningStreamFetchOperator(
        task_id="fetch", dataset=ws.dataset, stream="s", output_path=str(tmp_path / "b.jsonl"), batch_size=3
    )
    first = fetch.execute(context)
    assert first["count"] == 3 and not first["advanced"] and first["sequence_id"]
    assert fetch.execute(context)["sequence_id"] == first["sequence_id"]  # not advanced: same batch again
    rows = read_jsonl(first["path"])
    assert rows[0]["uid"] == f"{ws.source_id}.n0" and rows[0]["labels"][0]["name"] == "Card"
    advance = CommunicationsMiningStreamAdvanceOperator(
        task_id="advance", dataset=ws.dataset, stream="s", sequence_id=first["sequence_id"]
    )
    assert advance.execute(context) == first["sequence_id"]
    second = fetch.execute(context)
    assert [r["comment"]["id"] for r in read_jsonl(second["path"])] == ["n3", "n4"] and second["caught_up"]
    nothing = CommunicationsMiningStreamAdvanceOperator(
        task_id="a2", dataset=ws.dataset, stream="s", sequence_id="None"
    )
    assert nothing.execute(context) is None


def test_fetch_with_advance_drains_and_applies_thresholds(model_workspace, hook, tmp_path, context):
    ws = model_workspace
    hook.put_stream(ws.dataset, "s", model_version=1)
    upload_new(hook, ws, [f"refund order {i}" for i in range(7)])
    fetch = CommunicationsMiningStreamFetchOperator(
        task_id="fetch",
        dataset=ws.dataset,
        stream="s",
        output_path=str(tmp_path / "all.jsonl"),
        batch_size=2,
        advance=True,
        label_thresholds={"Billing > Refund": 0.5},
    )
    result = fetch.execute(context)
    assert result["count"] == 7 and result["caught_up"] and result["sequence_id"] is None
    rows = read_jsonl(result["path"])
    assert all([label["name"] for label in row["labels"]] == ["Billing > Refund"] for row in rows)
    assert hook.fetch_stream(ws.dataset, "s", size=10)["results"] == []
    again = fetch.execute(context)  # a retried try keeps what the first one acknowledged
    assert again["count"] == 7 and len(read_jsonl(again["path"])) == 7
    fetch.output_path = str(tmp_path / "next.jsonl")
    empty = fetch.execute(context)
    assert empty["count"] == 0 and read_jsonl(empty["path"]) == []


FETCH = "POST /api/v1/datasets/{project}/{name}/streams/{stream}/fetch"
ADVANCE = "POST /api/v1/datasets/{project}/{name}/streams/{stream}/advance"
RESET = "POST /api/v1/datasets/{project}/{name}/streams/{stream}/reset"


def drain_failing_second_advance(emulator, fetch, context, stream, every: int = 2):
    """Run ``fetch`` while the stream's second (``every``-th) advance answers 500 (no retry): the try fails
    after batch 1 (the batches before) is acknowledged and the next written but not acknowledged."""
    rule = {"kind": "status", "status": 500, "path_contains": f"/streams/{stream}/advance", "every": every}
    emulator.admin("POST", "faults", {"faults": [rule]})
    try:
        with pytest.raises(CommunicationsMiningError):
            fetch.execute(context)
    finally:
        emulator.admin("DELETE", "faults")


def test_drain_failing_between_batches_keeps_what_was_written_and_places_the_file_only_when_done(
    model_workspace, hook, tmp_path, context, emulator
):
    ws = model_workspace
    hook.put_stream(ws.dataset, "retried", model_version=1)
    upload_new(hook, ws, [f"lost card {i}" for i in range(7)])
    target = tmp_path / "out" / "drain.jsonl"
    fetch = CommunicationsMiningStreamFetchOperator(
        task_id="fetch",
        dataset=ws.dataset,
        stream="retried",
        output_path=str(target),
        batch_size=2,
        advance=True,
        retry_max_attempts=1,
    )
    drain_failing_second_advance(emulator, fetch, context, "retried")
    assert not target.exists()  # nothing partial under the final name
    spool = target.with_name(".drain.jsonl.drain")
    assert [json.loads(line)["comment"]["id"] for line in spool.read_text().splitlines()] == ["n0", "n1", "n2", "n3"]
    with spool.open("a") as cut:
        cut.write('{"uid": "cut by a cra')  # a line a crash cut short, of a batch never acknowledged
    fetches, advances = emulator.requests_to(FETCH), emulator.requests_to(ADVANCE)

    result = fetch.execute(context)  # the retried try keeps batches 1 and 2, fetches 2 again, then the rest
    ids = [row["comment"]["id"] for row in read_jsonl(target)]
    assert ids == ["n0", "n1", "n2", "n3", "n2", "n3", "n4", "n5", "n6"]
    assert result == {
        "path": str(target),
        "count": 9,
        "sequence_id": None,
        "advanced": True,
        "caught_up": True,
        "redelivered": 0,
    }
    assert not spool.exists() and [p.name for p in target.parent.iterdir()] == ["drain.jsonl"]
    # two requests per batch: the last batch ends the stream, so no empty fetch follows it
    assert (emulator.requests_to(FETCH) - fetches, emulator.requests_to(ADVANCE) - advances) == (3, 3)
    assert hook.fetch_stream(ws.dataset, "retried", size=10)["results"] == []


class TaskStateStore:
    """``context["task_state_store"]`` as Airflow 3.3+ gives it: JSON values by key, kept across the task's tries."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key, default=None):
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key, value) -> None:
        self.values[key] = json.dumps(value)

    def delete(self, key) -> None:
        self.values.pop(key, None)


def drain_on_two_workers(model_workspace, hook, tmp_path, emulator, stream, **kwargs):
    """A drain whose first try fails after acknowledging two batches (its third advance answers 500), on
    "worker A"; returns the operator and a context for the retry on "worker B", which has no spool."""
    ws = model_workspace
    hook.put_stream(ws.dataset, stream, model_version=1)
    upload_new(hook, ws, [f"card declined {i}" for i in range(7)])
    worker_a = tmp_path / "worker-a"
    fetch = CommunicationsMiningStreamFetchOperator(
        task_id="fetch",
        dataset=ws.dataset,
        stream=stream,
        output_path=str(worker_a / "drain.jsonl"),
        batch_size=2,
        advance=True,
        retry_max_attempts=1,
        **kwargs,
    )
    context = {"ti": FakeTaskInstance(), "task_state_store": TaskStateStore()}
    drain_failing_second_advance(emulator, fetch, context, stream, every=3)
    [first_try] = context["task_state_store"].get("communications_mining_drain")["tries"]
    assert (first_try["acknowledged"], first_try["in_flight"]) == (4, 2)
    assert first_try["spool"] == str(worker_a / ".drain.jsonl.drain")
    fetch.output_path = str(tmp_path / "worker-b" / "drain.jsonl")  # the same path, on a disk without the spool
    return fetch, context, first_try


def test_a_retry_on_another_worker_resets_the_stream_and_delivers_every_acknowledged_result_again(
    model_workspace, hook, tmp_path, emulator, capfd
):
    fetch, context, first_try = drain_on_two_workers(model_workspace, hook, tmp_path, emulator, "moved")
    capfd.readouterr()
    result = fetch.execute(context)
    logged = capfd.readouterr()
    ids = [row["comment"]["id"] for row in read_jsonl(result["path"])]
    assert ids == [f"n{i}" for i in range(7)]  # from the first acknowledged comment on, each once
    assert (result["count"], result["redelivered"], result["caught_up"]) == (7, 4, True)
    assert context["task_state_store"].values == {}  # cleared: the task succeeded with every result
    warning = next(line for line in (logged.out + logged.err).splitlines() if "resetting the stream to" in line)
    assert "acknowledged 4 results" in warning and "up to 2 more" in warning and first_try["spool"] in warning
    assert "(4 of them delivered again" in logged.out + logged.err
    assert hook.fetch_stream(model_workspace.dataset, "moved", size=10)["results"] == []


def test_with_on_lost_output_fail_a_retry_on_another_worker_fails_naming_the_host_and_spool(
    model_workspace, hook, tmp_path, emulator
):
    fetch, context, first_try = drain_on_two_workers(
        model_workspace, hook, tmp_path, emulator, "moved-fail", on_lost_output="fail"
    )
    with pytest.raises(AirflowFailException) as raised:
        fetch.execute(context)
    message = str(raised.value)
    assert f"in {first_try['spool']} on host {first_try['host']}" in message and "acknowledged 4 results" in message
    # Nothing reset: the stream goes on after the acknowledged batches.
    head = hook.fetch_stream(model_workspace.dataset, "moved-fail", size=1)["results"]
    assert head[0]["comment"]["id"] == "n4"


def test_a_retry_on_the_same_worker_keeps_its_spool_and_resets_nothing(model_workspace, hook, tmp_path, emulator):
    fetch, context, _ = drain_on_two_workers(model_workspace, hook, tmp_path, emulator, "stayed")
    fetch.output_path = str(tmp_path / "worker-a" / "drain.jsonl")  # back on worker A, its spool there
    resets = emulator.requests_to(RESET)
    result = fetch.execute(context)
    ids = [row["comment"]["id"] for row in read_jsonl(result["path"])]
    assert ids == ["n0", "n1", "n2", "n3", "n4", "n5", "n4", "n5", "n6"]  # the unacknowledged batch twice
    assert (result["redelivered"], emulator.requests_to(RESET) - resets) == (0, 0)


def test_drain_to_an_object_store_keeps_every_acknowledged_result(model_workspace, hook, context, emulator):
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())
    ws = model_workspace
    hook.put_stream(ws.dataset, "stored", model_version=1)
    upload_new(hook, ws, [f"refund order {i}" for i in range(5)])
    target = ObjectStoragePath(f"memory://bucket/{ws.dataset}/drain.jsonl")
    fetch = CommunicationsMiningStreamFetchOperator(
        task_id="fetch",
        dataset=ws.dataset,
        stream="stored",
        output_path=str(target),
        batch_size=2,
        advance=True,
        retry_max_attempts=1,
    )
    drain_failing_second_advance(emulator, fetch, context, "stored")
    assert not target.exists()  # nothing partial under the final name
    # The store holds what the failed try wrote, one part per batch, each written once.
    parts = sorted(p.name for p in (target.parent / ".drain.jsonl.parts").iterdir())
    assert parts == ["part-000001.jsonl", "part-000002.jsonl"]
    lines = [line for part in parts for line in (target.parent / ".drain.jsonl.parts" / part).read_text().splitlines()]
    assert [json.loads(line)["comment"]["id"] for line in lines] == ["n0", "n1", "n2", "n3"]
    result = fetch.execute(context)
    ids = [json.loads(line)["comment"]["id"] for line in target.read_text().splitlines()]
    assert ids == ["n0", "n1", "n2", "n3", "n2", "n3", "n4"] and result["count"] == 7 and result["caught_up"]
    assert [p.name for p in target.parent.iterdir()] == ["drain.jsonl"]  # no temporary object left


def test_fetch_skips_filtered_only_batches(model_workspace, hook, tmp_path, context):
    ws = model_workspace
    hook.put_stream(
        ws.dataset, "s", model_version=1, comment_filter={"user_properties": {"string:Channel": {"one_of": ["email"]}}}
    )
    props = [{"string:Channel": "chat"}] * 4 + [{"string:Channel": "email"}]
    upload_new(hook, ws, ["a", "b", "c", "d", "lost card"], properties=props)
    fetch = CommunicationsMiningStreamFetchOperator(
        task_id="fetch", dataset=ws.dataset, stream="s", output_path=str(tmp_path / "f.jsonl"), batch_size=2
    )
    result = fetch.execute(context)
    assert result["count"] == 1 and read_jsonl(result["path"])[0]["comment"]["id"] == "n4"


def test_reset_refuses_to_skip_unread(model_workspace, hook, context):
    ws = model_workspace
    hook.put_stream(ws.dataset, "s", model_version=1)
    upload_new(hook, ws, ["unread card"])
    forward = CommunicationsMiningStreamResetOperator(
        task_id="reset", dataset=ws.dataset, stream="s", to_comment_created_at="2100-01-01T00:00:00Z"
    )
    with pytest.raises(AirflowFailException, match="would skip unread results"):
        forward.execute(context)
    back = CommunicationsMiningStreamResetOperator(
        task_id="back", dataset=ws.dataset, stream="s", to_comment_created_at="2000-01-01"
    )
    assert back.execute(context)["sequence_id"]
    forward.allow_skipping_unread = True
    forward.execute(context)
    assert hook.fetch_stream(ws.dataset, "s", size=10)["results"] == []


def test_tag_exceptions_operator_accepts_lists_and_json(model_workspace, hook, context):
    ws = model_workspace
    hook.put_stream(ws.dataset, "s", model_version=1)
    uids = [f"{ws.source_id}.t0", f"{ws.source_id}.t1"]
    op = CommunicationsMiningTagExceptionsOperator(
        task_id="tag", dataset=ws.dataset, stream="s", uids=json.dumps(uids), exception_type="Refused"
    )
    assert op.execute(context) == 2
    op.uids = []
    assert op.execute(context) == 0


def test_model_tag_operator_gate(model_workspace, emulator, context):
    ws = model_workspace
    op = CommunicationsMiningModelTagOperator(task_id="tag", dataset=ws.dataset, tag="live", expected_version=1)
    assert op.execute(context) == 1
    emulator.admin("POST", f"datasets/{ws.dataset}/models", {"tag": "live"})  # retrain: live moves to 2
    with pytest.raises(CommunicationsMiningModelDriftError, match="points to version 2, not the expected version 1"):
        op.execute(context)
    with pytest.raises(AirflowFailException, match="no model tagged 'staging'"):
        CommunicationsMiningModelTagOperator(task_id="s", dataset=ws.dataset, tag="staging").execute(context)
    with pytest.raises(CommunicationsMiningNotFoundError):
        CommunicationsMiningModelTagOperator(task_id="m", dataset=f"{ws.project}/missing").execute(context)


def test_predict_operator(model_workspace, tmp_path, context, emulator):
    ws = model_workspace
    path = write_jsonl(
        tmp_path / "new.jsonl", [make_record(f"x{i}", "2026-10-30T00:00:00Z", "lost my card") for i in range(5)]
    )
    op = CommunicationsMiningPredictOperator(
        task_id="predict",
        dataset=ws.dataset,
        version=1,
        input_path=str(path),
        output_path=str(tmp_path / "p.jsonl"),
        batch_size=2,
    )
    result = op.execute(context)
    rows = read_jsonl(result["path"])
    assert result["count"] == 5 and [r["id"] for r in rows] == [f"x{i}" for i in range(5)]
    assert rows[0]["labels"][0]["name"] == "Card"
    op.max_documents = 4
    with pytest.raises(AirflowFailException, match="max_documents=4"):
        op.execute(context)


# -- sensor and trigger -----------------------------------------------------------------------------


def test_sensor_poke_mode(model_workspace, hook, context):
    ws = model_workspace
    hook.put_stream(ws.dataset, "s", model_version=1)
    sensor = CommunicationsMiningStreamSensor(
        task_id="wait", dataset=ws.dataset, stream="s", min_results=2, poke_interval=0.1, timeout=0.5, mode="poke"
    )
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute(context)
    sensor.soft_fail = True
    with pytest.raises(AirflowSkipException):
        sensor.execute(context)
    upload_new(hook, ws, ["card lost", "refund"])
    sensor.soft_fail = False
    assert sensor.execute(context) == 2
    assert len(hook.fetch_stream(ws.dataset, "s", size=10)["results"]) == 2  # not advanced


def test_trigger_serializes_and_polls(model_workspace, hook):
    ws = model_workspace
    hook.put_stream(ws.dataset, "s", model_version=1)
    trigger = CommunicationsMiningStreamTrigger(
        dataset=ws.dataset, stream="s", min_results=1, poll_interval=0.05, deadline=time.time() + 0.3
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_cm.triggers.streams.CommunicationsMiningStreamTrigger"
    assert CommunicationsMiningStreamTrigger(**kwargs).serialize() == (classpath, kwargs)
    json.dumps(kwargs)

    assert asyncio.run(first_event(trigger))["status"] == "timeout"
    upload_new(hook, ws, ["lost card"])
    trigger.deadline = time.time() + 30
    assert asyncio.run(first_event(trigger)) == {"status": "success", "results": 1, "end_of_stream": True}
    missing = CommunicationsMiningStreamTrigger(dataset=ws.dataset, stream="missing", poll_interval=0.05)
    event = asyncio.run(first_event(missing))
    assert event["status"] == "error" and "404" in event["message"]
    assert event["error_type"] == "CommunicationsMiningNotFoundError" and event["status_code"] == 404


async def first_event(trigger: CommunicationsMiningStreamTrigger) -> dict:
    """The trigger's first event, then its clean-up, as the triggerer runs them."""
    try:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")
    finally:
        await trigger.cleanup()


def test_trigger_keeps_one_client_for_its_run_and_closes_it(model_workspace, hook):
    ws = model_workspace
    hook.put_stream(ws.dataset, "s", model_version=1)
    trigger = CommunicationsMiningStreamTrigger(
        dataset=ws.dataset, stream="s", poll_interval=0.01, deadline=time.time() + 0.2
    )

    async def run() -> tuple[dict, int, bool]:
        transports = set()
        original = trigger.hook.afetch_stream

        async def counted(*args, **kwargs):
            transports.add(id(await trigger.hook.atransport()))
            return await original(*args, **kwargs)

        trigger.hook.afetch_stream = counted  # type: ignore[method-assign]
        transport = await trigger.hook.atransport()
        event = await first_event(trigger)
        return event, len(transports), transport.client.is_closed

    event, transports, closed = asyncio.run(run())
    assert event["status"] == "timeout" and transports == 1 and closed


def deferred_sensor(ws, **kwargs) -> CommunicationsMiningStreamSensor:
    return CommunicationsMiningStreamSensor(
        task_id="wait", dataset=ws.dataset, stream="s", deferrable=True, poke_interval=0.05, **kwargs
    )


def test_api_error_while_deferred_fails_the_task_even_with_soft_fail(model_workspace, hook, context):
    """A stream deleted while the sensor waits must not become a skip (a green run)."""
    ws = model_workspace
    hook.put_stream(ws.dataset, "s", model_version=1)
    sensor = deferred_sensor(ws, soft_fail=True, timeout=60)
    trigger = CommunicationsMiningStreamTrigger(dataset=ws.dataset, stream="s", poll_interval=0.05)
    hook.delete_stream(ws.dataset, "s")
    event = asyncio.run(first_event(trigger))
    with pytest.raises(CommunicationsMiningError, match="404") as info:
        sensor.resume_execution("execute_complete", {"event": event}, context)
    assert not isinstance(info.value, AirflowSkipException)
    # A trigger that crashed (no event) fails too; a timeout is still a skip with soft_fail.
    with pytest.raises(TaskDeferralError):
        sensor.resume_execution("__fail__", {"error": "Trigger failure"}, context)
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("execute_complete", {"event": {"status": "timeout", "results": 0}}, context)
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("__fail__", {"error": "Trigger timeout"}, context)
    sensor.soft_fail = False
    with pytest.raises(AirflowSensorTimeout):
        sensor.resume_execution("execute_complete", {"event": {"status": "timeout", "results": 0}}, context)


def test_api_error_fails_poke_mode_even_with_soft_fail(model_workspace, hook, context):
    ws = model_workspace
    sensor = CommunicationsMiningStreamSensor(
        task_id="wait", dataset=ws.dataset, stream="gone", soft_fail=True, poke_interval=0.05, timeout=5, mode="poke"
    )
    with pytest.raises(CommunicationsMiningNotFoundError):
        sensor.execute(context)
    with pytest.raises(CommunicationsMiningNotFoundError):
        deferred_sensor(ws, soft_fail=True, timeout=5).execute(context)  # the first poke, before deferring


def test_sensor_says_at_least_when_more_may_wait(model_workspace, hook, context, capfd):
    ws = model_workspace
    hook.put_stream(ws.dataset, "s", model_version=1)
    upload_new(hook, ws, [f"card lost {i}" for i in range(12)])
    sensor = CommunicationsMiningStreamSensor(
        task_id="wait", dataset=ws.dataset, stream="s", min_results=1, batch_size=5, mode="poke"
    )
    assert sensor.execute(context) == 5
    sensor.batch_size = 20
    assert sensor.execute(context) == 12
    captured = capfd.readouterr()
    logged = captured.out + captured.err
    assert "at least 5 results wait" in logged and "12 results wait" in logged and "at least 12" not in logged


def stored_drain_record(dag_id: str, run_id: str) -> dict | None:
    """The drain's record as the metadata database keeps it: the task state store (3.3+) or a Variable (3.2)."""
    from airflow.utils.session import create_session

    from airflow_provider_cm.common.compat import HAS_TASK_STATE_STORE
    from airflow_provider_cm.common.drain.ledger import STATE_KEY

    with create_session() as session:
        if HAS_TASK_STATE_STORE:
            from airflow.models.task_state_store import TaskStateStoreModel

            row = session.query(TaskStateStoreModel).filter_by(dag_id=dag_id, run_id=run_id, key=STATE_KEY).first()
            return json.loads(row.value) if row else None
        from airflow.models.variable import Variable

        row = session.query(Variable).filter_by(key=f"{STATE_KEY}/{dag_id}/{run_id}/drain/-1").first()
        return json.loads(row.val) if row else None


def test_cm_stream_drain_records_its_tries_in_airflows_store_and_clears_them_when_done(
    airflow_db, model_workspace, hook, tmp_path, emulator, monkeypatch
):
    """``cm_stream_drain`` with ``dag.test()``: the record goes through Airflow's own store (the task state
    store from 3.3, a Variable on 3.2), is there after a failed try, and is gone after a successful run."""
    from tests.system.test_example_dags import load_dag, xcom_values

    ws = model_workspace
    hook.put_stream(ws.dataset, "in-a-run", model_version=1)
    upload_new(hook, ws, [f"atm kept my card {i}" for i in range(5)])
    for key, value in {
        "CM_DATASET": ws.dataset,
        "CM_STREAM": "in-a-run",
        "CM_DRAIN_ROOT": str(tmp_path),
        "CM_DRAIN_BATCH_SIZE": "2",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW__CORE__DEFAULT_TASK_RETRIES", "0")
    dag = load_dag("cm_stream_drain")
    dag.default_args["retries"] = 0
    for task in dag.tasks:
        task.retries = 0
        task.retry_max_attempts = 1
    rule = {"kind": "status", "status": 500, "path_contains": "/streams/in-a-run/advance", "every": 2}
    emulator.admin("POST", "faults", {"faults": [rule]})
    try:
        failed = dag.test()
    finally:
        emulator.admin("DELETE", "faults")
    assert failed.state == "failed"
    [first_try] = stored_drain_record(dag.dag_id, failed.run_id)["tries"]
    assert (first_try["acknowledged"], first_try["in_flight"]) == (2, 2)

    done = dag.test()
    assert done.state == "success"
    assert stored_drain_record(dag.dag_id, done.run_id) is None
    drained = xcom_values(done)["drain"]
    assert (drained["count"], drained["redelivered"], drained["caught_up"]) == (3, 0, True)
