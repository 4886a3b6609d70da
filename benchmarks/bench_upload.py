"""Upload: the operator against a bare ``requests`` loop and the official CLI's strategy.

All three read the same BANKING77 JSONL file (repeated with new ids) and write into a fresh
source (and dataset) of the same emulator; the operator runs with its default parameters.

- The bare loop reads a line at a time and sends ``sync`` batches of 1,024 one after another;
  with a dataset it then writes each comment of the batch's labels, 8 requests in flight. It
  checks nothing and keeps no counts: the most a client can get from the API this simply.
- The CLI strategy is :mod:`benchmarks.cli_strategy` (batches of 128, 32 label writes in flight).

Cases: comments only; comments and labels; a rerun of the same labelled file over what the first
run stored (nothing changed: the CLI rewrites everything); the labelled upload under a token
bucket (how many requests the API throttled with 429).
"""

from __future__ import annotations

import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from benchmarks import cli_strategy
from benchmarks.harness import TOKEN, Emulator, median, timed_result, write_corpus

BARE_BATCH = 1024
BARE_CONCURRENCY = 8


@dataclass
class Target:
    source: str
    dataset: str | None
    source_id: str


def new_target(with_dataset: bool) -> Target:
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    name = "u" + uuid.uuid4().hex[:10]
    hook.create_project(name)
    source = hook.create_source(f"{name}/inbox")
    dataset = None
    if with_dataset:
        dataset = f"{name}/support"
        hook.create_dataset(dataset, source_ids=[source["id"]])
    return Target(f"{name}/inbox", dataset, source["id"])


def bare_upload(url: str, path: Path, target: Target) -> None:
    import json

    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=BARE_CONCURRENCY * 2))
    session.headers["Authorization"] = f"Bearer {TOKEN}"

    def label(record: dict) -> None:
        uid = f"{target.source_id}.{record['comment']['id']}"
        session.post(
            f"{url}/api/_private/datasets/{target.dataset}/labellings/{uid}",
            json={"labelling": record["labelling"]},
            timeout=120,
        ).raise_for_status()

    def send(batch: list[dict], pool: ThreadPoolExecutor) -> None:
        session.post(
            f"{url}/api/v1/sources/{target.source}/sync", json={"comments": [r["comment"] for r in batch]}, timeout=120
        ).raise_for_status()
        if target.dataset:
            list(pool.map(label, batch))

    with open(path, encoding="utf-8") as handle, ThreadPoolExecutor(BARE_CONCURRENCY) as pool:
        batch: list[dict] = []
        for line in handle:
            batch.append(json.loads(line))
            if len(batch) == BARE_BATCH:
                send(batch, pool)
                batch = []
        if batch:
            send(batch, pool)


def cli_upload(url: str, path: Path, target: Target) -> None:
    cli_strategy.upload(url, path, target.source, target.dataset)


def operator_upload(path: Path, target: Target) -> dict:
    """The operator with its defaults, as a DAG would use it."""
    from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator

    operator = CommunicationsMiningUploadCommentsOperator(
        task_id="bench", source=target.source, dataset=target.dataset, input_path=str(path)
    )
    return operator.execute({})


def _latency_label(latency: float) -> str:
    return f"{latency * 1000:.0f} ms"


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} comments/s"


def comments_only(emulator: Emulator, path: Path, count: int, latency: float, runs: int) -> dict:
    """Item 1: comments only, each side on a fresh source, ``runs`` times, median."""
    times: dict[str, list[float]] = {"bare": [], "cli": [], "operator": []}
    for _ in range(runs):
        # Targets are created before the clock starts: with latency, creating one takes 3 requests.
        times["bare"].append(timed_result(bare_upload, emulator.url, path, new_target(False))[0])
        times["cli"].append(timed_result(cli_upload, emulator.url, path, new_target(False))[0])
        seconds, result = timed_result(operator_upload, path, new_target(False))
        times["operator"].append(seconds)
        assert result["new"] == count, result
    bare, cli, operator = (median(times[k]) for k in ("bare", "cli", "operator"))
    return {
        "benchmark": f"upload {count:,} comments",
        "latency": _latency_label(latency),
        "bare": _rate(count, bare),
        "cli": _rate(count, cli),
        "operator": _rate(count, operator),
        "vs_bare": bare / operator,
        "vs_cli": cli / operator,
        "goal": "≥ 0.9× bare" if not latency else "",
    }


def requests_answered(emulator: Emulator) -> int:
    """API requests the emulator has answered so far (429s included), every route."""
    return sum(emulator.stats()["requests_by_route"].values())


def cli_request_rate(emulator: Emulator, path: Path) -> tuple[float, float]:
    """One unthrottled CLI-strategy run on a fresh dataset: ``(its requests per second, its seconds)``."""
    target = new_target(True)
    before = requests_answered(emulator)
    seconds = timed_result(cli_upload, emulator.url, path, target)[0]
    return (requests_answered(emulator) - before) / seconds, seconds


def labelled_and_rerun(
    emulator: Emulator, path: Path, count: int, latency: float, runs: int
) -> tuple[list[dict], float]:
    """Items 2 and 3: a labelled upload on a fresh dataset, then the same file again over it; and the CLI
    strategy's request rate on its first runs (requests per second, the median), for the token bucket."""
    times: dict[str, list[float]] = {k: [] for k in ("bare", "cli", "cli_rerun", "operator", "operator_rerun")}
    cli_rates: list[float] = []
    for _ in range(runs):
        times["bare"].append(timed_result(bare_upload, emulator.url, path, new_target(True))[0])
        target = new_target(True)
        before = requests_answered(emulator)
        times["cli"].append(timed_result(cli_upload, emulator.url, path, target)[0])
        cli_rates.append((requests_answered(emulator) - before) / times["cli"][-1])
        times["cli_rerun"].append(timed_result(cli_upload, emulator.url, path, target)[0])
        target = new_target(True)
        seconds, first = timed_result(operator_upload, path, target)
        times["operator"].append(seconds)
        seconds, rerun = timed_result(operator_upload, path, target)
        times["operator_rerun"].append(seconds)
        assert first["new"] == count and first["annotated"] == count, first
        assert rerun["unchanged"] == count, rerun
    bare, cli, cli_rerun, operator, operator_rerun = (median(v) for v in times.values())
    cli_rate = median(cli_rates)
    rows = [
        {
            "benchmark": f"upload {count:,} comments with labels",
            "latency": _latency_label(latency),
            "bare": _rate(count, bare),
            "cli": f"{_rate(count, cli)} ({cli_rate:,.0f} requests/s)",
            "operator": _rate(count, operator),
            "vs_bare": bare / operator,
            "vs_cli": cli / operator,
            "goal": "≥ 2× CLI" if latency else "",
        },
        {
            "benchmark": f"rerun of the unchanged labelled file ({count:,} comments): time",
            "latency": _latency_label(latency),
            "bare": "",
            "cli": f"{cli_rerun:.2f} s (first run {cli:.2f} s)",
            "operator": f"{operator_rerun:.2f} s (first run {operator:.2f} s; "
            f"first ÷ rerun {operator / operator_rerun:.2f}×)",
            "vs_bare": None,
            "vs_cli": cli_rerun / operator_rerun,
            "goal": "rerun ≪ first run",
        },
    ]
    return rows, cli_rate


def throttled(emulator: Emulator, path: Path, count: int, rate: float, burst: float, latency: float = 0.0) -> dict:
    """Item 6: the labelled upload under a token bucket, each side on a fresh dataset: requests answered 429
    (the bucket's own count: a new bucket starts at 0), and the time."""
    outcome: dict[str, str] = {}
    seconds: dict[str, float] = {}
    refusals: dict[str, int] = {}
    for name, upload in (
        ("cli", lambda t: cli_upload(emulator.url, path, t)),
        ("operator", lambda t: operator_upload(path, t)),
    ):
        target = new_target(True)
        emulator.set_rate_limit(rate, burst)
        try:
            seconds[name], result = timed_result(upload, target)
            finished = "done"
            if name == "operator":
                assert result["new"] == count and result["annotated"] == count, result
        except Exception as exc:  # the CLI gives up after its 4th attempt
            seconds[name] = float("nan")
            finished = f"failed: {type(exc).__name__}"
        finally:
            refusals[name] = emulator.stats()["throttled"]
            emulator.set_rate_limit(None)
        billed = emulator.stats()["billed_by_source"].get(target.source_id, 0)
        assert billed == count, f"{name}: {billed} comments billed for {count}"
        outcome[name] = f"{refusals[name]:,} × 429, {seconds[name]:.1f} s ({finished})"
    return {
        "benchmark": f"upload {count:,} comments with labels, token bucket {rate:,.0f} requests/s "
        f"(burst {burst:,.0f}) ¹",
        "latency": _latency_label(latency),
        "bare": "",
        "cli": outcome["cli"],
        "operator": outcome["operator"],
        "vs_bare": None,
        "vs_cli": seconds["cli"] / seconds["operator"],
        "goal": "429s ≤ CLI's, faster",
        "refusals": refusals,
    }


@dataclass
class Sizes:
    comments: int = 30_009
    labelled: int = 2_000
    throttled: int = 2_000
    #: The token bucket's rate, as a fraction of the CLI strategy's unthrottled request rate at that latency.
    bucket: float = 0.7
    #: The bucket's burst, in seconds of its rate.
    burst_seconds: float = 1.0


def warm_up(path: Path) -> None:
    """The operator's first run in a process loads Airflow's provider registry (0.4 to 1.3 s here) when it
    opens its input: done once before any clock starts, as the cases at 0 ms do for those at 100 ms."""
    from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator

    CommunicationsMiningUploadCommentsOperator(
        task_id="warm_up", source="warm/up", input_path=str(path), dry_run=True
    ).execute({})


def run(emulator: Emulator, runs: int, latencies: tuple[float, ...], sizes: Sizes, parts: set[str]) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        plain, labelled = Path(tmp) / "comments.jsonl", Path(tmp) / "labelled.jsonl"
        write_corpus(plain, sizes.comments, labelled=False)
        write_corpus(labelled, sizes.labelled)
        throttled_path = Path(tmp) / "throttled.jsonl"
        write_corpus(throttled_path, sizes.throttled)
        warm_up(labelled)
        for latency in latencies:
            emulator.set_latency(latency)
            # With latency every run takes seconds to minutes; one run is enough to read a ratio.
            case_runs = runs if not latency else 1
            try:
                if "upload" in parts:
                    rows.append(comments_only(emulator, plain, sizes.comments, latency, case_runs))
                cli_rate = None
                if "labels" in parts:
                    labelled_rows, cli_rate = labelled_and_rerun(emulator, labelled, sizes.labelled, latency, case_runs)
                    rows += labelled_rows
                if "throttle" in parts:
                    # One tenant's limit, near (0 ms) and remote (100 ms): a bucket the CLI strategy exceeds.
                    if cli_rate is None or sizes.throttled != sizes.labelled:
                        cli_rate = cli_request_rate(emulator, throttled_path)[0]
                    rate = sizes.bucket * cli_rate
                    burst = max(1.0, rate * sizes.burst_seconds)
                    rows.append(throttled(emulator, throttled_path, sizes.throttled, rate, burst, latency))
            finally:
                emulator.set_latency(0.0)
    return rows
