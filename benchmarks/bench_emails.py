"""Upload e-mails: the operator against a bare ``requests`` loop over the same route (``sync-raw-emails``).

Both read the same folder of ``.eml`` files, written before the clock starts: BANKING77's real
customer messages as plain-text e-mails (``From``, ``To``, ``Subject``, ``Date``, a unique
``Message-ID`` per run), and write into a fresh source of the same emulator.

- The bare loop reads each file, splits it at the first blank line into raw headers and body
  (right for these single-part e-mails, wrong for MIME in general), and sends ``sync-raw-emails``
  batches of 256 (the operator's default) one after another. It parses no MIME, checks nothing
  and keeps no counts: the most a client can get from the route this simply.
- The operator runs with its defaults: MIME parsing with the standard library, the document check,
  the spool, batches by count and bytes, dead letters and counts.

The official CLI has no counterpart (``re parse emls`` uploads to a bucket), so there is no CLI column.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import requests

from benchmarks.bench_upload import new_target
from benchmarks.harness import TOKEN, Emulator, banking77_records, median, timed_result

BARE_BATCH = 256


def write_emails(folder: Path, count: int) -> int:
    """``count`` ``.eml`` files of BANKING77 texts, with Message-IDs no earlier run used."""
    folder.mkdir(parents=True, exist_ok=True)
    records = banking77_records()
    run = uuid.uuid4().hex[:8]
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    for i in range(count):
        text = records[i % len(records)]["comment"]["messages"][0]["body"]["text"]
        message = EmailMessage()
        message["From"] = f"Customer {i} <customer{i}@example.com>"
        message["To"] = "Support <support@bank.example>"
        message["Subject"] = " ".join(text.split()[:6])
        message["Date"] = format_datetime(start + timedelta(seconds=i))
        message["Message-ID"] = f"<{run}.{i}@bench.example>"
        message.set_content(text)
        (folder / f"{i:06d}.eml").write_bytes(message.as_bytes())
    return count


def bare_upload(url: str, folder: Path, source: str) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"

    def send(documents: list[dict]) -> None:
        body = {"documents": documents, "transform_tag": "generic.0.CONVKER5", "include_comments": False}
        session.post(f"{url}/api/v1/sources/{source}/sync-raw-emails", json=body, timeout=120).raise_for_status()

    batch: list[dict] = []
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        headers, _, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
        batch.append(
            {
                "raw_email": {
                    "headers": {"raw": headers.decode("utf-8", "replace")},
                    "body": {"plain": body.decode("utf-8", "replace")},
                    "attachments": [],
                },
                "user_properties": {},
            }
        )
        if len(batch) == BARE_BATCH:
            send(batch)
            batch = []
    if batch:
        send(batch)


def operator_upload(folder: Path, source: str) -> dict:
    """The operator with its defaults, as a DAG would use it."""
    from airflow_provider_cm.operators.emails import CommunicationsMiningUploadEmailsOperator

    return CommunicationsMiningUploadEmailsOperator(task_id="bench", source=source, input_path=str(folder)).execute({})


def run(emulator: Emulator, runs: int, latencies: tuple[float, ...], count: int) -> list[dict]:
    rows: list[dict] = []
    for latency in latencies:
        emulator.set_latency(latency)
        case_runs = runs if not latency else 1
        times: dict[str, list[float]] = {"bare": [], "operator": []}
        try:
            for _ in range(case_runs):
                with tempfile.TemporaryDirectory() as tmp:
                    # Fresh Message-IDs for each side, written before the clock starts.
                    bare_folder, operator_folder = Path(tmp) / "bare", Path(tmp) / "operator"
                    write_emails(bare_folder, count)
                    write_emails(operator_folder, count)
                    target = new_target(False)
                    times["bare"].append(timed_result(bare_upload, emulator.url, bare_folder, target.source)[0])
                    target = new_target(False)
                    seconds, result = timed_result(operator_upload, operator_folder, target.source)
                    times["operator"].append(seconds)
                    assert result["new"] == count and result["rejected"] == 0, json.dumps(result)
        finally:
            emulator.set_latency(0.0)
        bare, operator = median(times["bare"]), median(times["operator"])
        rows.append(
            {
                "benchmark": f"upload {count:,} e-mails (.eml files)",
                "latency": f"{latency * 1000:.0f} ms",
                "bare": f"{count / bare:,.0f} e-mails/s",
                "cli": "(none: re parse emls uploads to a bucket)",
                "operator": f"{count / operator:,.0f} e-mails/s",
                "vs_bare": bare / operator,
                "vs_cli": None,
                "goal": "",
            }
        )
    return rows
