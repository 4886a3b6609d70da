"""Stream drain throughput: the fetch operator (``advance=True``) against a bare loop of fetch/advance.

Both drain the same number of comments from identical streams (same dataset, same pinned
model), 1,024 comments per fetch; the operator also writes each batch to a JSONL file and moves
it into place before advancing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import requests

from benchmarks.harness import TOKEN, Emulator, banking77_records

SIZE = 1024


def seed(emulator: Emulator) -> tuple[str, int]:
    """A dataset with BANKING77's first 20 days labelled and a model pinned as version 1."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    hook.create_project("streambench")
    source = hook.create_source("streambench/inbox")
    hook.create_dataset("streambench/support", source_ids=[source["id"]])
    records = banking77_records()
    early = [r for r in records if r["comment"]["timestamp"] < "2026-10-21"]
    hook.sync_comments("streambench/inbox", [r["comment"] for r in early])
    for record in early[:3000]:
        uid = f"{source['id']}.{record['comment']['id']}"
        hook.update_annotations("streambench/support", uid, labelling=record["labelling"])
    emulator.admin_pin("streambench/support")
    return "streambench/support", len(records)


def refill(name: str, dataset: str) -> int:
    """Create stream ``name`` and upload a fresh copy of the later days for it to deliver."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    hook.put_stream(dataset, name, model_version=1)
    late = [r["comment"] for r in banking77_records() if r["comment"]["timestamp"] >= "2026-10-21"]
    comments = [dict(c, id=f"{c['id']}-{name}") for c in late]
    hook.sync_comments("streambench/inbox", comments)
    return len(comments)


def bare_drain(url: str, dataset: str, stream: str) -> int:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    base = f"{url}/api/v1/datasets/{dataset}/streams/{stream}"
    count = 0
    while True:
        batch = session.post(f"{base}/fetch", json={"size": SIZE}, timeout=120).json()
        if not batch["results"] and not batch["filtered"]:
            return count
        count += len(batch["results"])
        session.post(f"{base}/advance", json={"sequence_id": batch["sequence_id"]}, timeout=120).raise_for_status()


def operator_drain(dataset: str, stream: str, path: Path) -> int:
    from airflow_provider_cm.operators.streams import CommunicationsMiningStreamFetchOperator

    operator = CommunicationsMiningStreamFetchOperator(
        task_id="bench", dataset=dataset, stream=stream, output_path=str(path),
        batch_size=SIZE, advance=True, max_results=1_000_000,
    )  # fmt: skip
    return operator.execute({})["count"]


def run(emulator: Emulator, runs: int = 3) -> list[dict]:
    import time

    dataset, _ = seed(emulator)
    bare_times, operator_times = [], []
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        for run_number in range(runs):
            for kind in ("bare", "operator"):
                name = f"{kind}-{run_number}"
                count = refill(name, dataset)
                started = time.perf_counter()
                if kind == "bare":
                    assert bare_drain(emulator.url, dataset, name) >= count
                    bare_times.append(time.perf_counter() - started)
                else:
                    assert operator_drain(dataset, name, Path(tmp) / f"{name}.jsonl") >= count
                    operator_times.append(time.perf_counter() - started)
    bare, operator = sorted(bare_times)[len(bare_times) // 2], sorted(operator_times)[len(operator_times) // 2]
    return [
        {
            "benchmark": f"stream drain, {count:,} comments (fetch size {SIZE:,}, model predictions)",
            "baseline": f"{count / bare:,.0f} comments/s",
            "operator": f"{count / operator:,.0f} comments/s",
            "ratio": bare / operator,
            "target": "",
        }
    ]
