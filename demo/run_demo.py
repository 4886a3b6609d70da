"""The demo: upload a corpus into a local Communications Mining emulator, export it night by night
into object storage and load it into a SQLite warehouse, then say what landed where.

    python demo/run_demo.py [--input PATH.jsonl|PATH.csv] [--workdir .demo]

Everything runs locally: the emulator in its own process, the example DAGs with ``dag.test()``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the emulator exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the emulator did not start within 30 s")


def days_spanned(input_path: Path) -> list[datetime]:
    """Every UTC day from the earliest to the latest comment timestamp in the file."""
    from airflow_provider_cm.operators.comment_files import detect_format, iter_records

    fmt = detect_format(str(input_path), "auto")
    columns = {"id": "id", "timestamp": "timestamp", "text": "text"}
    low = high = None
    with open(input_path, "rb") as handle:
        for item in iter_records(handle, fmt, csv_columns=columns):
            if isinstance(item, tuple):
                continue
            moment = datetime.fromisoformat(item.comment["timestamp"]).astimezone(timezone.utc)
            low = moment if low is None or moment < low else low
            high = moment if high is None or moment > high else high
    if low is None or high is None:
        raise SystemExit(f"{input_path} holds no valid comment")
    first = datetime(low.year, low.month, low.day, tzinfo=timezone.utc)
    return [first + timedelta(days=n) for n in range((high - first).days + 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, help="JSONL (re CLI format) or CSV; default: a generated sample")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".demo")
    args = parser.parse_args()

    workdir = args.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    token = "demo-" + secrets.token_hex(16)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/demo-org/demo-tenant/reinfer_"
    os.environ.update(
        {
            "AIRFLOW_HOME": str(workdir / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT": json.dumps(
                {"conn_type": "communications_mining", "host": endpoint, "password": token}
            ),
            "AIRFLOW_CONN_CM_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(workdir / "warehouse.db")}),
            "CM_SOURCE": "demo/support-inbox",
            "CM_DATASET": "demo/support",
            "CM_EXPORT_ROOT": str(workdir / "exports"),
        }
    )
    if args.input:
        input_path = args.input.resolve()
    else:
        from demo.sample_corpus import generate

        input_path = generate(workdir / "sample" / "comments.jsonl")
    print(f"Input:      {input_path}")

    emulator = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_cm.emulator", "--port", str(port), "--token", token],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, emulator)
        print(f"Emulator:   {endpoint}")
        return run(input_path, workdir)
    finally:
        emulator.terminate()
        emulator.wait(timeout=15)


def run(input_path: Path, workdir: Path) -> int:
    import importlib.util

    from airflow.utils.db import initdb

    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    initdb()
    hook = CommunicationsMiningHook()
    hook.create_project("demo", title="Demo")
    source = hook.create_source("demo/support-inbox", title="Support inbox")
    hook.create_dataset("demo/support", source_ids=[source["id"]], title="Support")
    print("Seeded:     project demo, source demo/support-inbox, dataset demo/support")

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, ROOT / "example_dags" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module.dag

    upload_run = load("cm_upload_comments").test(run_conf={"input_path": str(input_path)})
    if upload_run.state != "success":
        print("The upload DAG failed; see the log above.")
        return 1
    stats = hook.request("GET", "_emulator/stats")["stats"]
    print(f"Uploaded:   {stats['comments']} comments stored, {stats['billed_comments']} billed")

    days = days_spanned(input_path)
    exported = 0
    export_dag = load("cm_nightly_export")
    for day in days:
        run = export_dag.test(logical_date=day + timedelta(days=1))
        if run.state != "success":
            print(f"The nightly export for {day:%Y-%m-%d} failed; see the log above.")
            return 1
    files = sorted((workdir / "exports").rglob("*.jsonl"))
    exported = sum(sum(1 for _ in open(f, encoding="utf-8")) for f in files)
    print(f"Exported:   {exported} comments in {len(files)} daily files under {workdir / 'exports'}")
    with sqlite3.connect(workdir / "warehouse.db") as db:
        rows, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT uid) FROM cm_comments").fetchone()
        labelled = db.execute("SELECT COUNT(*) FROM cm_comments WHERE assigned_labels != '[]'").fetchone()[0]
    print(f"Warehouse:  {rows} rows ({distinct} distinct uids, {labelled} with labels) in {workdir / 'warehouse.db'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
