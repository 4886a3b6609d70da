"""Comment ids holding reserved characters are routed on the raw, percent-encoded path.

The hook sends every path segment percent-encoded (``quote(segment, safe=":")``), so ``/`` arrives
as ``%2F``; the emulator matches routes before decoding, as a real server does, so reading such a
comment and writing its labels work.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests

from tests.conftest import TOKEN, make_record

AUTH = {"Authorization": f"Bearer {TOKEN}"}
IDS = ["a/b", "thread/42/message/7", "50%", "with space", "ünïcödé-✓", "q?x=1#frag", "%2F-literal"]


@pytest.mark.parametrize("comment_id", IDS)
def test_get_and_label_a_comment_whose_id_holds_reserved_characters(hook, workspace, comment_id):
    hook.sync_comments(workspace.source, [make_record(comment_id, "2026-10-01T00:00:00Z")["comment"]])
    assert hook.get_comment(workspace.source, comment_id)["id"] == comment_id
    uid = f"{workspace.source_id}.{comment_id}"
    written = hook.update_annotations(workspace.dataset, uid, labelling=[{"assigned": [{"name": "Routed"}]}])
    assert written["comment"]["uid"] == uid
    [read] = hook.get_annotations(workspace.dataset, [uid])
    assert read["labelling"][0]["assigned"][0]["name"] == "Routed"


def test_an_encoded_slash_is_one_segment_under_any_prefix(emulator, hook, workspace):
    hook.sync_comments(workspace.source, [make_record("x/y", "2026-10-01T00:00:00Z")["comment"]])
    for prefix in ("", "/acme/production/reinfer_"):
        url = f"{emulator.url}{prefix}/api/v1/sources/{workspace.source}/comments/{quote('x/y', safe='')}"
        response = requests.get(url, headers=AUTH, timeout=10)
        assert response.status_code == 200 and response.json()["comment"]["id"] == "x/y"
    unencoded = requests.get(f"{emulator.url}/api/v1/sources/{workspace.source}/comments/x/y", headers=AUTH, timeout=10)
    assert unencoded.status_code == 404 and unencoded.json() == {"status": "error", "message": "404 Not Found"}
