"""Export: the operator against a bare ``requests`` loop and the official CLI's strategy, and the
operator's peak memory growth.

All three export the same dataset window (October 2026) from the same emulator and write one JSON
line per comment to a local file; the operator runs with its default parameters (its default
``export_concurrency`` exports time slices at once). The bare loop
asks for pages of 256 (the route's maximum) one after another; the CLI strategy is
:mod:`benchmarks.cli_strategy` (also one serial chain). With latency, a serial chain cannot beat
``pages * latency``, the serial bound, reported beside the figures.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from benchmarks import cli_strategy
from benchmarks.harness import ROOT, TOKEN, Emulator, banking77_records, median, timed_result

START, END = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"
PAGE = 256
_seeded: dict[int, str] = {}


def seed(count: int) -> str:
    """A dataset holding ``count`` comments (BANKING77 texts repeated with new ids), once per size."""
    if count in _seeded:
        return _seeded[count]
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    name = f"export{count}"
    hook.create_project(name)
    source = hook.create_source(f"{name}/inbox")
    hook.create_dataset(f"{name}/all", source_ids=[source["id"]])
    records = banking77_records()
    batch = []
    for i in range(count):
        record = records[i % len(records)]
        batch.append(dict(record["comment"], id=f"{record['comment']['id']}-{i // len(records)}"))
        if len(batch) == 8192:
            hook.sync_comments(f"{name}/inbox", batch)
            batch = []
    if batch:
        hook.sync_comments(f"{name}/inbox", batch)
    _seeded[count] = f"{name}/all"
    return _seeded[count]


def bare_export(url: str, dataset: str, path: Path) -> int:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    count = 0
    body: dict = {"limit": PAGE, "order_by": "timestamp", "from": START, "to": END}
    with open(path, "w", encoding="utf-8") as handle:
        while True:
            page = session.post(f"{url}/api/v1/datasets/{dataset}/export", json=body, timeout=120).json()
            for comment in page["comments"]:
                handle.write(json.dumps(comment) + "\n")
                count += 1
            if "continuation" not in page:
                return count
            body["continuation"] = page["continuation"]


def operator_export(dataset: str, path: Path, start: str = "2026-10-01", end: str = "2026-11-01") -> int:
    """The operator with its defaults, as a DAG would use it."""
    from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator

    operator = CommunicationsMiningExportDatasetOperator(
        task_id="bench", dataset=dataset, output_path=str(path), start=start, end=end
    )
    return operator.execute({})["count"]


def peak_memory_growth_mb(dataset: str, count: int) -> float:
    """Peak RSS growth of an operator export of the whole dataset, measured in a fresh process."""
    script = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
from benchmarks.bench_export import operator_export
from pathlib import Path
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
# Warm up on one hour of comments: imports, connection, first allocations.
operator_export({dataset!r}, Path(os.devnull), "2026-10-01T00:00:00Z", "2026-10-01T01:00:00Z")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS")
assert operator_export({dataset!r}, Path(os.devnull)) == {count}
print(status("VmHWM") - before)
"""
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return float(output.strip().splitlines()[-1])


def measure(emulator: Emulator, count: int, latency: float, runs: int) -> dict:
    dataset = seed(count)
    with tempfile.TemporaryDirectory() as tmp:
        # Untimed: the emulator builds its index of the dataset on the first export after a write.
        assert bare_export(emulator.url, dataset, Path(tmp) / "warm.jsonl") == count
    times: dict[str, list[float]] = {"bare": [], "cli": [], "operator": []}
    emulator.set_latency(latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.jsonl"
            for _ in range(runs):
                for name, seconds, got in (
                    ("bare", *timed_result(bare_export, emulator.url, dataset, out)),
                    ("cli", *timed_result(cli_strategy.export, emulator.url, dataset, out, START, END)),
                    ("operator", *timed_result(operator_export, dataset, out)),
                ):
                    assert got == count, (name, got, count)
                    times[name].append(seconds)
    finally:
        emulator.set_latency(0.0)
    bare, cli, operator = (median(times[k]) for k in ("bare", "cli", "operator"))
    pages = math.ceil(count / PAGE)
    bound = f"; serial bound {pages:,} pages × {latency * 1000:.0f} ms = {pages * latency:.1f} s" if latency else ""
    return {
        "benchmark": f"export {count:,} comments",
        "latency": f"{latency * 1000:.0f} ms",
        "bare": f"{count / bare:,.0f} comments/s ({bare:.1f} s)",
        "cli": f"{count / cli:,.0f} comments/s ({cli:.1f} s)",
        "operator": f"{count / operator:,.0f} comments/s ({operator:.1f} s)",
        "vs_bare": bare / operator,
        "vs_cli": cli / operator,
        "goal": (f"beat the serial bound{bound}" if latency else "≥ 0.9× bare"),
    }


def run(emulator: Emulator, runs: int, latencies: tuple[float, ...], local_count: int, remote_count: int) -> list[dict]:
    rows = []
    for latency in latencies:
        count = remote_count if latency else local_count
        rows.append(measure(emulator, count, latency, runs if not latency else 1))
    if 0.0 in latencies:
        memory = peak_memory_growth_mb(seed(local_count), local_count)
        rows.append(
            {
                "benchmark": f"export {local_count:,} comments: peak memory growth (RSS)",
                "latency": "0 ms",
                "bare": "",
                "cli": "",
                "operator": f"{memory:.1f} MB",
                "vs_bare": None,
                "vs_cli": None,
                "goal": "< 64 MB",
            }
        )
    return rows
