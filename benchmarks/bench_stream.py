"""Stream drain: the fetch operator (``advance=True``) against a bare fetch/advance loop and the
official CLI's strategy.

Each side drains its own stream, created on the same dataset and pinned model and filled with the
same comments. The operator runs with its default ``batch_size``, writes each batch to a JSONL file
and moves it into place before advancing; the bare loop fetches as many comments per request as
the operator and writes nothing (the bound for this request pattern); the CLI strategy
(:mod:`benchmarks.cli_strategy`) fetches 16 at a time and writes each result.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path

import requests

from benchmarks import cli_strategy
from benchmarks.harness import TOKEN, Emulator, banking77_records, median, timed_result


def operator_batch_size() -> int:
    """The operator's default ``batch_size``: the bare loop fetches as much per request."""
    from airflow_provider_cm.operators.streams import CommunicationsMiningStreamFetchOperator

    return inspect.signature(CommunicationsMiningStreamFetchOperator.__init__).parameters["batch_size"].default


def seed() -> str:
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
    return "streambench/support"


def refill(name: str, dataset: str) -> int:
    """Create stream ``name`` and upload a fresh copy of the later days for it to deliver."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    hook.put_stream(dataset, name, model_version=1)
    late = [r["comment"] for r in banking77_records() if r["comment"]["timestamp"] >= "2026-10-21"]
    comments = [dict(c, id=f"{c['id']}-{name}") for c in late]
    hook.sync_comments("streambench/inbox", comments)
    return len(comments)


def bare_drain(url: str, dataset: str, stream: str, size: int) -> int:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    base = f"{url}/api/v1/datasets/{dataset}/streams/{stream}"
    count = 0
    while True:
        batch = session.post(f"{base}/fetch", json={"size": size}, timeout=120).json()
        if not batch["results"] and not batch["filtered"]:
            return count
        count += len(batch["results"])
        session.post(f"{base}/advance", json={"sequence_id": batch["sequence_id"]}, timeout=120).raise_for_status()


def operator_drain(dataset: str, stream: str, path: Path) -> int:
    """The operator with its defaults, draining (``advance=True``, no cap on the comments)."""
    from airflow_provider_cm.operators.streams import CommunicationsMiningStreamFetchOperator

    operator = CommunicationsMiningStreamFetchOperator(
        task_id="bench", dataset=dataset, stream=stream, output_path=str(path), advance=True, max_results=10**9
    )
    return operator.execute({})["count"]


def run(emulator: Emulator, runs: int, latencies: tuple[float, ...]) -> list[dict]:
    dataset = seed()
    emulator.admin_pin(dataset)
    size = operator_batch_size()
    rows = []
    serial = 0
    with tempfile.TemporaryDirectory() as tmp:
        for latency in latencies:
            times: dict[str, list[float]] = {"bare": [], "cli": [], "operator": []}
            count = 0
            for _ in range(runs if not latency else 1):
                for kind in times:
                    serial += 1
                    name = f"{kind}-{serial}"
                    count = refill(name, dataset)
                    out = Path(tmp) / f"{name}.jsonl"
                    drains = {
                        "bare": (bare_drain, emulator.url, dataset, name, size),
                        "cli": (cli_strategy.drain_stream, emulator.url, dataset, name, out),
                        "operator": (operator_drain, dataset, name, out),
                    }
                    emulator.set_latency(latency)
                    try:
                        seconds, drained = timed_result(*drains[kind])
                    finally:
                        emulator.set_latency(0.0)
                    assert drained >= count, (kind, drained, count)
                    times[kind].append(seconds)
            bare, cli, operator = (median(times[k]) for k in ("bare", "cli", "operator"))
            rows.append(
                {
                    "benchmark": f"stream drain, {count:,} comments (model predictions)",
                    "latency": f"{latency * 1000:.0f} ms",
                    "bare": f"{count / bare:,.0f} comments/s (fetch size {size:,})",
                    "cli": f"{count / cli:,.0f} comments/s (fetch size {cli_strategy.STREAM_SIZE})",
                    "operator": f"{count / operator:,.0f} comments/s",
                    "vs_bare": bare / operator,
                    "vs_cli": cli / operator,
                    "goal": "≥ 0.9× bare",
                }
            )
    return rows
