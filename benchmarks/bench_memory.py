"""Peak memory growth of the operator uploading one million comments, the whole upload (read,
check, spool, send), not a dry run.

The file is BANKING77 repeated with unique ids (comments only: a million label writes would take
the benchmark half an hour and hold nothing more in the operator's memory than a thousand do, the
batch in flight). The upload runs in a fresh process against its own emulator (which keeps every
comment, so it is stopped afterwards): after a small warm-up upload (imports, connections, first
allocations) the peak resident size is reset (``/proc/self/clear_refs``), and the growth is the
peak (``VmHWM``) minus the resident size before the upload. Memory the file's size drives (the
duplicate-id check, the spool's index) shows here; the spool itself is a temporary file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import ROOT, Emulator, write_corpus

_SCRIPT = """
import sys, tracemalloc
sys.path.insert(0, {root!r})
from pathlib import Path
from benchmarks.bench_upload import new_target, operator_upload

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024

operator_upload(Path({warm!r}), new_target(False))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS")
if {traced}:
    tracemalloc.start()
result = operator_upload(Path({path!r}), new_target(False))
traced = tracemalloc.get_traced_memory()[1] / 2**20 if {traced} else float("nan")
assert result["new"] == {count}, result
print(status("VmHWM") - before, traced)
"""


def run(count: int, trace: bool = False) -> list[dict]:
    saved = os.environ.get("AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT")
    emulator = Emulator()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path, warm = Path(tmp) / "comments.jsonl", Path(tmp) / "warm.jsonl"
            write_corpus(path, count, labelled=False, tag="m")
            write_corpus(warm, 2_048, labelled=False, tag="w")
            script = _SCRIPT.format(root=str(ROOT), warm=str(warm), path=str(path), count=count, traced=trace)
            output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
            size_mb = path.stat().st_size / 2**20
    finally:
        emulator.stop()
        if saved is not None:
            os.environ["AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT"] = saved
    rss, traced = (float(v) for v in output.strip().splitlines()[-1].split())
    figure = f"{rss:.1f} MB RSS" + (f", {traced:.1f} MB traced (tracemalloc)" if trace else "")
    return [
        {
            "benchmark": f"upload {count:,} comments ({size_mb:,.0f} MB file): peak memory growth",
            "latency": "0 ms",
            "bare": "",
            "cli": "",
            "operator": figure,
            "vs_bare": None,
            "vs_cli": None,
            "goal": "< 64 MB",
        }
    ]
