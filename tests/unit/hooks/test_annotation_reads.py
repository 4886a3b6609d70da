"""Reading annotations back, against the emulator (in process, see tests.in_process): by uid (chunked so URLs stay
short) and a source's reviewed comments page by page (the CLI's bulk read); and the attempt
observer that lets a caller see 429s the retry policy absorbs."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airflow_provider_cm.api.limits import MAX_ANNOTATION_READ_IDS
from airflow_provider_cm.client.annotation_reads import MAX_ANNOTATION_READ_QUERY, annotation_read_chunks
from airflow_provider_cm.exceptions import (
    CommunicationsMiningNotFoundError,
    CommunicationsMiningProtocolError,
    CommunicationsMiningRateLimitError,
)
from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook
from tests.conftest import TOKEN, connection_json, make_record
from tests.in_process import served_in_process

READ_ROUTE = "GET /api/_private/datasets/{project}/{name}/labellings"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def label(hook, workspace, comment_id: str, name: str) -> None:
    hook.update_annotations(
        workspace.dataset,
        f"{workspace.source_id}.{comment_id}",
        labelling=[{"group": "default", "assigned": [{"name": name}]}],
    )


def test_many_uids_are_read_in_requests_whose_query_stays_short(hook, workspace, emulator):
    ids = [f"order/{i:04d}-" + "x" * 40 for i in range(300)]  # long ids holding a '/' (percent-encoded)
    hook.sync_comments(workspace.source, [make_record(i, "2026-10-01T00:00:00Z")["comment"] for i in ids])
    label(hook, workspace, ids[123], "Refund")
    uids = [f"{workspace.source_id}.{i}" for i in ids]
    chunks = list(annotation_read_chunks(uids))
    assert [uid for chunk in chunks for uid in chunk] == uids
    assert all(len(chunk) <= MAX_ANNOTATION_READ_IDS for chunk in chunks)
    assert all(len(urlencode([("id", uid) for uid in chunk])) <= MAX_ANNOTATION_READ_QUERY for chunk in chunks)
    before = emulator.requests_to(READ_ROUTE)
    results = hook.get_annotations(workspace.dataset, uids)
    assert emulator.requests_to(READ_ROUTE) - before == len(chunks) > 1
    assert [r["comment"]["id"] for r in results] == ids
    assert results[123]["labelling"] == [{"group": "default", "assigned": [{"name": "Refund"}]}]
    assert "labelling" not in results[0]


def test_a_uid_not_in_the_dataset_is_not_found(hook, workspace):
    with pytest.raises(CommunicationsMiningNotFoundError):
        hook.get_annotations(workspace.dataset, [f"{workspace.source_id}.missing"])


def test_a_sources_reviewed_comments_are_read_page_by_page(hook, workspace, emulator):
    """30 comments, 20 with annotations of every kind: pages of 7 give those 20 once each, in order."""
    hook.sync_comments(
        workspace.source, [make_record(f"c{i:02d}", f"2026-10-01T00:00:{i:02d}Z")["comment"] for i in range(30)]
    )
    reviewed = []
    for i in range(0, 30, 3):  # assigned labels
        label(hook, workspace, f"c{i:02d}", "A")
        reviewed.append(i)
    for i in range(1, 30, 3):  # dismissed labels, or dismissed entities
        uid = f"{workspace.source_id}.c{i:02d}"
        if i % 2:
            hook.update_annotations(
                workspace.dataset, uid, labelling=[{"group": "default", "dismissed": [{"name": "B"}]}]
            )
        else:
            span = {"content_part": "body", "message_index": 0, "utf16_byte_start": 0, "utf16_byte_end": 4}
            hook.update_annotations(workspace.dataset, uid, entities={"dismissed": [{"name": "date", "span": span}]})
        reviewed.append(i)
    # a comment whose labels were removed again is not reviewed
    label(hook, workspace, "c02", "C")
    hook.update_annotations(workspace.dataset, f"{workspace.source_id}.c02", labelling=[])
    before = emulator.requests_to(READ_ROUTE)
    read = list(hook.iter_annotations(workspace.dataset, workspace.source_id, limit=7))
    assert [r["comment"]["id"] for r in read] == [f"c{i:02d}" for i in sorted(reviewed)]
    assert emulator.requests_to(READ_ROUTE) - before == 4  # 7 + 7 + 6, then the empty page that ends it
    assert all("predicted" not in group for r in read for group in r.get("labelling", []))


def test_return_predictions_adds_the_latest_models_labels(hook, workspace, emulator):
    hook.sync_comments(
        workspace.source,
        [
            make_record(f"p{i}", "2026-10-01T00:00:00Z", "refund my card" if i % 2 else "lost card")["comment"]
            for i in range(6)
        ],
    )
    for i in range(6):
        label(hook, workspace, f"p{i}", "Refund" if i % 2 else "Lost")
    assert all(
        "predicted" not in g
        for r in hook.iter_annotations(workspace.dataset, workspace.source_id, return_predictions=True)
        for g in r["labelling"]
    )
    emulator.admin("POST", f"datasets/{workspace.dataset}/models", {})
    read = list(hook.iter_annotations(workspace.dataset, workspace.source_id, return_predictions=True))
    assert len(read) == 6
    for annotated in read:
        [group] = annotated["labelling"]
        assert group["assigned"] and group["predicted"]
        assert {tuple(p["name"]) for p in group["predicted"]} <= {("Refund",), ("Lost",)}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("source_id=x&id=y", "either id"),
        ("limit=5", "give source_id"),
        ("source_id={sid}&limit=0", "limit"),
        ("source_id={sid}&limit=1025", "limit"),
        ("source_id={sid}&limit=ten", "limit"),
        ("source_id={sid}&return_predictions=yes", "return_predictions"),
        ("source_id={sid}&after=not-a-cursor", "after"),
    ],
)
def test_bad_bulk_queries_are_refused_with_400(workspace, emulator, query, message):
    url = f"{emulator.url}/api/_private/datasets/{workspace.dataset}/labellings?{query.format(sid=workspace.source_id)}"
    response = requests.get(url, headers=AUTH, timeout=30)
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]


def test_a_source_outside_the_dataset_is_not_found(hook, workspace):
    other = hook.create_source(f"{workspace.project}/elsewhere")["id"]
    with pytest.raises(CommunicationsMiningNotFoundError):
        list(hook.iter_annotations(workspace.dataset, other))


async def _same_page(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "results": [{"comment": {"id": "c1"}}], "after": "same"})


#: A service whose bulk read answers the same non-empty page with the same cursor forever.
_STUCK_PAGES = Starlette(routes=[Route("/{path:path}", _same_page)])


def test_a_cursor_that_does_not_move_on_is_a_protocol_error(monkeypatch):
    """The CLI aborts when ``after`` does not change while results keep coming; so does the hook."""
    with served_in_process(_STUCK_PAGES, "http://stuck.test"):
        monkeypatch.setenv("AIRFLOW_CONN_CM_STUCK", connection_json("http://stuck.test"))
        hook = CommunicationsMiningHook("cm_stuck")
        pages = hook.iter_annotations("p/d", "source")
        assert next(pages)["comment"]["id"] == "c1"
        with pytest.raises(CommunicationsMiningProtocolError, match="after"):
            next(pages)


def test_the_observer_sees_each_429_the_retry_policy_absorbs(hook, workspace, emulator):
    hook.sync_comments(workspace.source, [make_record("o1", "2026-10-01T00:00:00Z")["comment"]])
    seen: list[BaseException] = []
    rule = {"kind": "status", "status": 429, "retry_after": "0", "path_contains": "/labellings/", "count": 2}
    emulator.admin("POST", "faults", {"faults": [rule]})
    try:
        hook.update_annotations(
            workspace.dataset,
            f"{workspace.source_id}.o1",
            labelling=[{"group": "default", "assigned": [{"name": "A"}]}],
            observer=seen.append,
        )
    finally:
        emulator.admin("DELETE", "faults")
    assert [type(e) for e in seen] == [CommunicationsMiningRateLimitError] * 2
    [annotated] = hook.get_annotations(workspace.dataset, [f"{workspace.source_id}.o1"])
    assert annotated["labelling"][0]["assigned"] == [{"name": "A"}]
