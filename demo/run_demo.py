"""The demo: a local Communications Mining emulator, a corpus uploaded into it with labels, a model
pinned on the earlier days, the later days drained through a stream into a SQLite warehouse, every
day exported into object storage and loaded into the warehouse, a few new messages predicted;
then what landed where.

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

from cryptography.fernet import Fernet

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


def split_corpus(input_path: Path, workdir: Path) -> tuple[Path, Path, list[datetime], datetime]:
    """Split the input by time into the first two thirds of its days and the rest, as JSONL files.

    :return: (earlier file, later file, every day spanned, the split day).
    """
    from airflow_provider_cm.pipelines.comments.comment_files import detect_format, iter_records

    fmt = detect_format(str(input_path), "auto")
    columns = {
        "id": "id",
        "timestamp": "timestamp",
        "text": "text",
        "labels": "label",
        "user_properties": {"string:Channel": "channel"},
    }
    records = []
    with open(input_path, "rb") as handle:
        for item in iter_records(handle, fmt, csv_columns=columns):
            if isinstance(item, tuple):
                raise SystemExit(f"{input_path}:{item[0]}: {item[1]}: {item[2]}")
            record: dict = {"comment": item.comment_dict()}
            if item.labelling:
                record["labelling"] = item.labelling
            if item.entities:
                record["entities"] = item.entities
            records.append(record)
    if not records:
        raise SystemExit(f"{input_path} holds no comment")
    moments = [datetime.fromisoformat(r["comment"]["timestamp"]).astimezone(timezone.utc) for r in records]
    low, high = min(moments), max(moments)
    first = datetime(low.year, low.month, low.day, tzinfo=timezone.utc)
    days = [first + timedelta(days=n) for n in range((high - first).days + 1)]
    split = days[max(1, len(days) * 2 // 3)] if len(days) > 1 else high
    earlier, later = workdir / "input-earlier.jsonl", workdir / "input-later.jsonl"
    with open(earlier, "w", encoding="utf-8") as early_file, open(later, "w", encoding="utf-8") as late_file:
        for record, moment in zip(records, moments, strict=True):
            (early_file if moment < split else late_file).write(json.dumps(record) + "\n")
    return earlier, later, days, split


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
            # dag.test() runs without a dag-processor, so no DAG has registered the warehouse tables'
            # Assets, which the transfers' AssetAliases resolve to at run time: Airflow then warns on
            # every event ("AssetModel ... not found; cannot create asset event", "Emitting event for
            # inactive AssetModel"). Nothing is wrong with the data, so only its errors are shown.
            "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "airflow.assets.manager=ERROR",
            # A key of its own for the demo's metadata database, so that Airflow encrypts what it stores
            # (the stream drain's record) instead of warning "empty cryptography key".
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT": json.dumps(
                {"conn_type": "communications_mining", "host": endpoint, "password": token}
            ),
            "AIRFLOW_CONN_CM_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(workdir / "warehouse.db")}),
            "CM_SOURCE": "demo/support-inbox",
            "CM_DATASET": "demo/support",
            "CM_EXPORT_ROOT": str(workdir / "exports"),
            "CM_STREAM": "new-messages",
            # The nightly load into the typed tables: predictions of the model tagged live, and the day
            # before each night re-read (the example's default is 7; one keeps the demo's 30 nights short).
            "CM_MODEL_VERSION": "live",
            "CM_LOOKBACK_DAYS": "1",
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


def example_dag(name: str):
    """The DAG of ``example_dags/<name>.py``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "example_dags" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.dag


def succeeded(dag_run, what: str) -> bool:
    if dag_run.state != "success":
        print(f"{what} failed; see the log above.")
    return dag_run.state == "success"


def run_nights(days: list[datetime], workdir: Path) -> bool:
    """Every day exported to a file and loaded into the warehouse table; print what landed where."""
    export_dag, load_dag = example_dag("cm_nightly_export_to_files"), example_dag("cm_nightly_export")
    for day in days:
        for dag, what in ((export_dag, "export"), (load_dag, "load")):
            if not succeeded(dag.test(logical_date=day + timedelta(days=1)), f"The {what} of {day:%Y-%m-%d}"):
                return False
    files = sorted((workdir / "exports").rglob("*.jsonl"))
    exported = sum(sum(1 for _ in open(f, encoding="utf-8")) for f in files if "streams" not in f.parts)
    print(f"Exported:   {exported} comments in {len(days)} daily files under {workdir / 'exports'}")
    live, labelled, versions = warehouse_state(workdir)
    print(
        f"Warehouse:  {live} comments in cm_comments ({labelled} with assigned labels in cm_comment_labels), "
        f"predictions of model version {versions}"
    )
    return True


def warehouse_state(workdir: Path) -> tuple[int, int, str]:
    """Live comments, of them those with assigned labels, and the model versions of their predictions."""
    with sqlite3.connect(workdir / "warehouse.db") as db:
        live = db.execute("SELECT COUNT(*) FROM cm_comments WHERE _cm_deleted_at IS NULL").fetchone()[0]
        labelled = db.execute(
            "SELECT COUNT(DISTINCT uid) FROM cm_comment_labels WHERE kind = 'assigned' AND _cm_deleted_at IS NULL"
        ).fetchone()[0]
        versions = db.execute(
            "SELECT DISTINCT model_version FROM cm_comments WHERE _cm_deleted_at IS NULL ORDER BY 1"
        ).fetchall()
    return live, labelled, ", ".join(str(v) for (v,) in versions)


def day_of_activity(hook, workdir: Path) -> int | None:
    """Replay a day of a tenant's life (new and late comments, relabels, deletions, a retrain tagged live),
    then the next night's load: the tag moved, so it reconciles the whole dataset by itself.

    :return: the new live model version, or None if the night's load failed.
    """
    day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    changes = hook.request(
        "POST",
        "_emulator/datasets/demo/support/activity",
        json_body={
            "day": f"{day:%Y-%m-%d}",
            "seed": 1,
            "new_comments": 20,
            "late_uploads": 5,
            "late_by_days": 3,
            "relabels": 10,
            "deletions": 5,
            "retrain": True,
            "tag": "live",
        },
    )
    print(
        f"Activity:   {day:%Y-%m-%d}: {len(changes['created'])} new comments, {len(changes['late'])} uploaded late, "
        f"{len(changes['relabelled'])} relabelled, {len(changes['deleted'])} deleted, "
        f"version {changes['model_version']} trained and tagged live"
    )
    dag_run = example_dag("cm_nightly_export").test(logical_date=day + timedelta(days=1))
    if not succeeded(dag_run, f"The load of {day:%Y-%m-%d}"):
        return None
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        result = next(row.value for row in rows if row.key == "return_value" and row.task_id == "load_into_warehouse")
    platform = sum(1 for _ in hook.iter_export("demo/support"))
    live, _, versions = warehouse_state(workdir)
    print(
        f"Caught up:  the next night's {result['mode']} (live moved to version {result['model_version']}): "
        f"{result['rows_read']} comments read, {result['rows_written']} rows written, "
        f"{result['by_table']['comments']['marked_deleted']} comments marked deleted; "
        f"{live} live comments in cm_comments, {platform} on the platform, predictions of version {versions}"
    )
    return int(changes["model_version"])


def run(input_path: Path, workdir: Path) -> int:
    from airflow.utils.db import initdb

    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    initdb()
    hook = CommunicationsMiningHook()
    hook.create_project("demo", title="Demo")
    source = hook.create_source("demo/support-inbox", title="Support inbox")
    hook.create_dataset("demo/support", source_ids=[source["id"]], title="Support")
    print("Seeded:     project demo, source demo/support-inbox, dataset demo/support")
    earlier, later, days, split = split_corpus(input_path, workdir)
    print(f"Split:      comments before {split:%Y-%m-%d} first, the later ones after the stream exists")

    # 1. Upload the earlier days with their labels.
    if not succeeded(example_dag("cm_upload_comments").test(run_conf={"input_path": str(earlier)}), "The upload DAG"):
        return 1
    # 2. Pin a model trained on those labels, tag it live, and open a stream on it.
    version = hook.request("POST", "_emulator/datasets/demo/support/models", json_body={"tag": "live"})["version"]
    hook.put_stream("demo/support", "new-messages", model_version=version)
    print(f"Model:      version {version} pinned and tagged live; stream demo/support/new-messages created")
    # 3. New messages arrive: the later days.
    if not succeeded(example_dag("cm_upload_comments").test(run_conf={"input_path": str(later)}), "The upload DAG"):
        return 1
    stats = hook.request("GET", "_emulator/stats")["stats"]
    print(f"Uploaded:   {stats['comments']} comments stored, {stats['billed_comments']} billed")

    # 4. Nightly exports of every day into object storage, and straight into the warehouse.
    if not run_nights(days, workdir):
        return 1

    # 5. Drain the stream of new messages into the warehouse, advancing after each committed batch.
    os.environ["CM_SENSOR_TIMEOUT"] = "5"
    stream_dag = example_dag("cm_stream_to_warehouse")
    for _ in range(1000):
        dag_run = stream_dag.test()
        if not succeeded(dag_run, "The stream DAG"):
            return 1
        if dag_run.get_task_instance("wait_for_results").state == "skipped":
            break
    truth = {}
    with open(later, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            leaves = [a["name"] for g in record.get("labelling", []) for a in g.get("assigned", [])]
            truth[record["comment"]["id"]] = leaves
    with sqlite3.connect(workdir / "warehouse.db") as db:
        drained = db.execute("SELECT comment_id, top_label FROM cm_stream_results").fetchall()
    scored = [(cid, label) for cid, label in drained if truth.get(cid)]
    correct = sum(label in truth[cid] for cid, label in scored)
    accuracy = f", top predicted label right for {correct / len(scored):.1%}" if scored else ""
    print(f"Stream:     {len(drained)} of {len(truth)} new messages drained into cm_stream_results{accuracy}")

    # 6. A day of activity on the platform, and the warehouse catching up.
    new_version = day_of_activity(hook, workdir)
    if new_version is None:
        return 1

    # 7. Predict a few messages that are not in the platform, gated on the live model version.
    sample = workdir / "new-messages.jsonl"
    with open(later, encoding="utf-8") as source_file, open(sample, "w", encoding="utf-8") as handle:
        for _, line in zip(range(20), source_file, strict=False):
            handle.write(json.dumps({"comment": json.loads(line)["comment"]}) + "\n")
    os.environ["CM_EXPECTED_VERSION"] = str(new_version)
    predictions = workdir / "new-messages.predictions.jsonl"
    gate = example_dag("cm_model_tag_gate").test(run_conf={"input_path": str(sample), "output_path": str(predictions)})
    if not succeeded(gate, "The model-tag gate DAG"):
        return 1
    billed = hook.request("GET", "_emulator/stats")["stats"]["billed_predictions"]
    print(
        f"Predicted:  {sum(1 for _ in open(predictions))} messages with live model version {new_version} "
        f"({billed} billed)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
