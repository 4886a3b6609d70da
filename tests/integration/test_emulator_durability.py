"""With ``--state``, every write the emulator acknowledged survives a SIGKILL of its process.

The emulator is killed right after the last acknowledged write (no time for any periodic save),
restarted on the same state file, and every kind of write is read back: projects, sources,
comments (upsert and create-only), datasets, annotations, streams with their cursors and
exceptions, pinned model versions and tags, and the billing counters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from tests.conftest import TOKEN, free_port, make_record, start_emulator_process

AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Client:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = requests.request(method, f"{self.url}/{path}", json=body, headers=AUTH, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


def write_everything(api: Client) -> dict[str, Any]:
    """One acknowledged write of each kind; what to find after the restart."""
    api("PUT", "api/_private/projects/keep", {"project": {"title": "Keep"}})
    source_id = api("PUT", "api/v1/sources/keep/inbox", {"source": {"title": "Inbox"}})["source"]["id"]
    comments = [make_record(f"c{i}", f"2026-10-01T00:00:0{i}Z", text=f"card lost {i}")["comment"] for i in range(3)]
    api("POST", "api/v1/sources/keep/inbox/sync", {"comments": comments[:2]})
    api("PUT", "api/_private/sources/keep/inbox/comments", {"comments": comments[2:]})
    api("PUT", "api/v1/datasets/keep/support", {"dataset": {"source_ids": [source_id], "title": "Support"}})
    labelling = {"labelling": [{"group": "default", "assigned": [{"name": "Card > Lost", "sentiment": "negative"}]}]}
    for i in range(3):
        api("POST", f"api/_private/datasets/keep/support/labellings/{source_id}.c{i}", labelling)
    api("POST", "_emulator/datasets/keep/support/models", {"tag": "staging"})
    api("POST", "_emulator/datasets/keep/support/models", {})
    api("PUT", "_emulator/datasets/keep/support/model-tags/live", {"version": 2})
    api("PUT", "api/v1/datasets/keep/support/streams", {"stream": {"name": "s", "model": {"version": 2}}})
    api("POST", "api/v1/datasets/keep/support/streams/s/reset", {"to_comment_created_at": "2020-01-01T00:00:00Z"})
    batch = api("POST", "api/v1/datasets/keep/support/streams/s/fetch", {"size": 2})
    api("POST", "api/v1/datasets/keep/support/streams/s/advance", {"sequence_id": batch["sequence_id"]})
    exceptions = {"exceptions": [{"uid": f"{source_id}.c0", "metadata": {"type": "Refused"}}]}
    api("PUT", "api/v1/datasets/keep/support/streams/s/exceptions", exceptions)
    return {"source_id": source_id, "stats": api("GET", "_emulator/stats")["stats"]}


def test_every_acknowledged_write_survives_sigkill(tmp_path: Path):
    state = str(tmp_path / "not-yet" / "state.json")  # the emulator creates the state file's folder
    port = free_port()
    process = start_emulator_process(port, state=state)
    api = Client(f"http://127.0.0.1:{port}")
    try:
        written = write_everything(api)
    finally:
        process.kill()  # SIGKILL: no shutdown, no save
        process.wait(timeout=15)
    port = free_port()
    process = start_emulator_process(port, state=state)
    api = Client(f"http://127.0.0.1:{port}")
    try:
        source_id = written["source_id"]
        assert api("GET", "api/_private/projects/keep")["project"]["title"] == "Keep"
        assert api("GET", "api/v1/sources/keep/inbox")["source"]["id"] == source_id
        for i in range(3):
            assert api("GET", f"api/v1/sources/keep/inbox/comments/c{i}")["comment"]["uid"] == f"{source_id}.c{i}"
        assert api("GET", "api/v1/datasets/keep/support")["dataset"]["title"] == "Support"
        uids = "&".join(f"id={source_id}.c{i}" for i in range(3))
        results = api("GET", f"api/_private/datasets/keep/support/labellings?{uids}")["results"]
        assert [r["labelling"][0]["assigned"][0]["name"] for r in results] == ["Card > Lost"] * 3
        tags = {t["name"]: t["version"] for t in api("GET", "api/v1/datasets/keep/support/model-tags")["model_tags"]}
        assert tags == {"staging": 1, "live": 2}
        assert [m["version"] for m in api("POST", "api/_private/datasets/keep/support/labellers", {})["labellers"]] == [
            1,
            2,
        ]
        stream = api("GET", "api/v1/datasets/keep/support/streams/s")["stream"]
        assert stream["model"]["version"] == 2
        batch = api("POST", "api/v1/datasets/keep/support/streams/s/fetch", {"size": 8})
        assert [r["comment"]["id"] for r in batch["results"]] == ["c2"]  # the cursor moved past c0 and c1
        stats = api("GET", "_emulator/stats")["stats"]
        assert stats["billed_comments"] == written["stats"]["billed_comments"] == 3
        assert stats["comments"] == 3
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert Path(state).exists() and Path(state + ".journal").stat().st_size == 0  # compacted at start and stop


def test_a_write_cut_short_by_the_kill_is_ignored_at_replay(tmp_path: Path):
    state = str(tmp_path / "state.json")
    port = free_port()
    process = start_emulator_process(port, state=state)
    api = Client(f"http://127.0.0.1:{port}")
    try:
        api("PUT", "api/_private/projects/torn", {"project": {}})
    finally:
        process.kill()
        process.wait(timeout=15)
    with open(state + ".journal", "ab") as journal:
        journal.write(b'{"puts": [["project", "half"')  # a record the kill interrupted: never acknowledged
    port = free_port()
    process = start_emulator_process(port, state=state)
    try:
        projects = Client(f"http://127.0.0.1:{port}")("GET", "api/_private/projects")["projects"]
        assert [p["name"] for p in projects] == ["torn"]
    finally:
        process.terminate()
        process.wait(timeout=15)
