"""The stream-drain loop on its own: the hook as its client, the emulator's app in process, a writer in memory."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_cm.pipelines.stream_drain import DrainWriter, StreamBatch, StreamDrain
from tests.conftest import make_record

TRAINING = [
    ("my card was stolen yesterday", "Card > Lost"),
    ("I lost my card on the train", "Card > Lost"),
    ("I want a refund for this charge", "Billing > Refund"),
    ("refund the double payment please", "Billing > Refund"),
]
EMAIL_ONLY = {"user_properties": {"string:Channel": {"one_of": ["email"]}}}


class Recorder(DrainWriter):
    """Keeps each batch's comment ids and the order of the calls around the advance."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[str]] = []
        self.calls: list[str] = []
        self.fail_on = fail_on

    def write(self, batch: StreamBatch) -> None:
        if self.fail_on == len(self.batches):
            raise RuntimeError("the warehouse is down")
        self.batches.append([r["comment"]["id"] for r in batch["results"]])
        self.calls.append("write")

    def advancing(self, batch: StreamBatch) -> None:
        self.calls.append("advancing")

    def advanced(self, batch: StreamBatch) -> None:
        self.calls.append("advanced")


@pytest.fixture
def stream(workspace, hook, emulator):
    """A stream (model version 1) whose filter keeps e-mails only: 4 chat comments, then 3 e-mails."""
    labelled = [make_record(f"t{i}", "2026-10-01T00:00:00Z", text, label) for i, (text, label) in enumerate(TRAINING)]
    hook.sync_comments(workspace.source, [r["comment"] for r in labelled])
    for record in labelled:
        uid = f"{workspace.source_id}.{record['comment']['id']}"
        hook.update_annotations(workspace.dataset, uid, labelling=record["labelling"])
    emulator.admin("POST", f"datasets/{workspace.dataset}/models", {"tag": "live"})
    hook.put_stream(workspace.dataset, "s", model_version=1, comment_filter=EMAIL_ONLY)
    comments = []
    for n, channel in enumerate(["chat"] * 4 + ["email"] * 3):
        comment = make_record(f"n{n}", "2026-10-25T00:00:00Z", f"card {n} lost")["comment"]
        comment["user_properties"] = {"string:Channel": channel}
        comments.append(comment)
    hook.sync_comments(workspace.source, comments)
    return workspace.dataset, "s"


def drain(hook, stream, batch_size: int = 2) -> StreamDrain:
    dataset, name = stream
    return StreamDrain(hook, dataset, name, batch_size=batch_size, log=logging.getLogger("tests.stream_drain"))


def test_batches_the_filter_emptied_are_skipped_and_advanced_past(hook, stream, caplog):
    loop = drain(hook, stream)
    writer = Recorder()
    with caplog.at_level(logging.INFO, logger="tests.stream_drain"):
        done = loop.drain(writer, max_results=100)
    assert writer.batches == [["n4", "n5"], ["n6"]]  # the two batches of chat comments never reach the writer
    assert (done.results, done.batches, done.filtered, done.caught_up) == (3, 2, 4, True)
    assert caplog.text.count("Skipping 2 comments the stream filters out") == 2
    assert writer.calls == ["write", "advancing", "advanced"] * 2
    assert hook.fetch_stream(*stream, size=10)["results"] == []  # advanced past everything, the skipped included


def test_next_batch_advances_past_filtered_batches_only(hook, stream):
    loop = drain(hook, stream)
    batch = loop.next_batch(2)
    assert [r["comment"]["id"] for r in batch["results"]] == ["n4", "n5"]
    assert (loop.result.filtered, loop.result.sequence_id is not None) == (4, True)
    again = hook.fetch_stream(*stream, size=2)  # the batch with results was not acknowledged
    assert [r["comment"]["id"] for r in again["results"]] == ["n4", "n5"]


def test_a_batch_the_writer_fails_on_is_not_advanced_past(hook, stream):
    loop = drain(hook, stream)
    with pytest.raises(RuntimeError, match="warehouse"):
        loop.drain(Recorder(fail_on=1), max_results=100)
    assert (loop.result.batches, loop.result.results) == (1, 2)
    rest = hook.fetch_stream(*stream, size=10)  # the failed batch comes again, nothing after the last written
    assert [r["comment"]["id"] for r in rest["results"]] == ["n6"]


@pytest.mark.parametrize(
    ("limits", "expected"), [({"max_results": 2}, [["n4", "n5"]]), ({"max_batches": 1}, [["n4", "n5"]])]
)
def test_a_limit_stops_the_drain_before_the_end(hook, stream, limits, expected):
    writer = Recorder()
    done = drain(hook, stream).drain(writer, **{"max_results": 100, **limits})
    assert writer.batches == expected and done.caught_up is False
    assert [r["comment"]["id"] for r in hook.fetch_stream(*stream, size=10)["results"]] == ["n6"]


def test_a_fetch_asks_for_no_more_than_the_results_left(hook, stream):
    writer = Recorder()
    done = drain(hook, stream, batch_size=10).drain(writer, max_results=1)
    assert writer.batches == [["n4"]] and (done.results, done.caught_up) == (1, False)
