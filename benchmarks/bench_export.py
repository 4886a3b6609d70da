"""Export throughput of the operator against a bare ``requests`` loop over the same pages, and the
peak memory growth of exporting 200,000 comments.

Both sides export the same dataset window from the same emulator, 256 comments per page, and
write one JSON line per comment to a local file. The bare loop follows one ``continuation``
chain; the operator runs with its default ``export_concurrency`` (time slices exported at once).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from benchmarks.harness import ROOT, TOKEN, Emulator, banking77_records, best_of

COMMENTS = 200_000


def seed(emulator: Emulator) -> str:
    """A dataset holding COMMENTS comments (BANKING77 texts repeated with new ids), labels on the first 10,003."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    hook.create_project("bench")
    source = hook.create_source("bench/export")
    hook.create_dataset("bench/export", source_ids=[source["id"]])
    records = banking77_records()
    batch = []
    for i in range(COMMENTS):
        record = records[i % len(records)]
        comment = dict(record["comment"], id=f"{record['comment']['id']}-{i // len(records)}")
        batch.append(comment)
        if len(batch) == 8192:
            hook.sync_comments("bench/export", batch)
            batch = []
    if batch:
        hook.sync_comments("bench/export", batch)
    return "bench/export"


def bare_export(url: str, dataset: str, path: Path) -> int:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    count = 0
    body: dict = {"limit": 256, "order_by": "timestamp", "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}
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
    from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator

    operator = CommunicationsMiningExportDatasetOperator(
        task_id="bench", dataset=dataset, output_path=str(path), start=start, end=end
    )
    return operator.execute({})["count"]


def peak_memory_growth_mb(dataset: str) -> float:
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
assert operator_export({dataset!r}, Path(os.devnull)) == {COMMENTS}
print(status("VmHWM") - before)
"""
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return float(output.strip().splitlines()[-1])


def run(emulator: Emulator, runs: int = 3) -> list[dict]:
    dataset = seed(emulator)
    with tempfile.TemporaryDirectory() as tmp:
        bare_path, op_path = Path(tmp) / "bare.jsonl", Path(tmp) / "op.jsonl"
        assert bare_export(emulator.url, dataset, bare_path) == COMMENTS
        assert operator_export(dataset, op_path) == COMMENTS
        bare = best_of(runs, lambda: bare_export(emulator.url, dataset, bare_path))
        operator = best_of(runs, lambda: operator_export(dataset, op_path))
    memory = peak_memory_growth_mb(dataset)
    return [
        {
            "benchmark": f"export {COMMENTS:,} comments (256 per page)",
            "baseline": f"{COMMENTS / bare:,.0f} comments/s",
            "operator": f"{COMMENTS / operator:,.0f} comments/s",
            "ratio": bare / operator,
            "target": "≥ 0.9×",
        },
        {
            "benchmark": f"export {COMMENTS:,} comments: peak memory growth",
            "baseline": "",
            "operator": f"{memory:.1f} MB",
            "ratio": None,
            "target": "< 64 MB",
        },
    ]
