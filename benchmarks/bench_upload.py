"""Upload throughput of the operator against a bare ``requests`` loop sending the same batches.

Both sides read BANKING77 (10,003 comments, repeated to 30,009 with new ids) from a JSONL file
and send ``sync`` batches of 1,024 comments to a fresh source; with labels, both then write each
comment's labels with 8 requests in flight.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from benchmarks.harness import TOKEN, Emulator, banking77_records, best_of

REPEAT = 3
BATCH = 1024
CONCURRENCY = 8
#: Seconds added to every request in the "remote tenant" case.
LATENCY = 0.1


def write_corpus(path: Path) -> int:
    records = banking77_records()
    with open(path, "w", encoding="utf-8") as handle:
        for copy in range(REPEAT):
            for record in records:
                record = dict(record, comment=dict(record["comment"], id=f"{record['comment']['id']}-{copy}"))
                handle.write(json.dumps(record) + "\n")
    return len(records) * REPEAT


def new_target(with_dataset: bool) -> tuple[str, str | None, str]:
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    name = "u" + uuid.uuid4().hex[:10]
    hook.create_project(name)
    source = hook.create_source(f"{name}/inbox")
    dataset = None
    if with_dataset:
        dataset = f"{name}/support"
        hook.create_dataset(dataset, source_ids=[source["id"]])
    return f"{name}/inbox", dataset, source["id"]


def bare_upload(url: str, path: Path, with_dataset: bool) -> None:
    source, dataset, source_id = new_target(with_dataset)
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=CONCURRENCY * 2))
    session.headers["Authorization"] = f"Bearer {TOKEN}"

    def label(record: dict) -> None:
        uid = f"{source_id}.{record['comment']['id']}"
        session.post(
            f"{url}/api/_private/datasets/{dataset}/labellings/{uid}", json={"labelling": record["labelling"]}
        ).raise_for_status()

    def send(batch: list[dict], pool: ThreadPoolExecutor) -> None:
        session.post(
            f"{url}/api/v1/sources/{source}/sync", json={"comments": [r["comment"] for r in batch]}, timeout=120
        ).raise_for_status()
        if dataset:
            list(pool.map(label, batch))

    with open(path, encoding="utf-8") as handle, ThreadPoolExecutor(CONCURRENCY) as pool:
        batch: list[dict] = []
        for line in handle:
            batch.append(json.loads(line))
            if len(batch) == BATCH:
                send(batch, pool)
                batch = []
        if batch:
            send(batch, pool)


def operator_upload(path: Path, with_dataset: bool) -> dict:
    from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator

    source, dataset, _ = new_target(with_dataset)
    operator = CommunicationsMiningUploadCommentsOperator(
        task_id="bench",
        source=source,
        dataset=dataset,
        input_path=str(path),
        batch_size=BATCH,
        annotation_concurrency=CONCURRENCY,
    )
    return operator.execute({})


def run(emulator: Emulator, runs: int = 3) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.jsonl"
        count = write_corpus(path)
        cases = [
            (False, 0.0, runs),  # comments only, local emulator: client CPU dominates
            (False, LATENCY, 1),  # comments only, with a remote tenant's latency per request
            (True, 0.0, 1),  # comments and labels
        ]
        for with_dataset, latency, case_runs in cases:
            emulator.set_latency(latency)
            try:
                assert operator_upload(path, with_dataset)["new"] == count
                bare = best_of(case_runs, lambda w=with_dataset: bare_upload(emulator.url, path, w))
                operator = best_of(case_runs, lambda w=with_dataset: operator_upload(path, w))
            finally:
                emulator.set_latency(0.0)
            what = "comments and labels" if with_dataset else "comments"
            where = f", {latency * 1000:.0f} ms latency per request" if latency else ""
            rows.append(
                {
                    "benchmark": f"upload {count:,} {what} (sync batches of {BATCH:,}{where})",
                    "baseline": f"{count / bare:,.0f} comments/s",
                    "operator": f"{count / operator:,.0f} comments/s",
                    "ratio": bare / operator,
                    "target": "≥ 0.8×",
                }
            )
    return rows
