"""Run the benchmarks and print the table for the docs (docs/benchmarks.md).

    python benchmarks/run.py [--runs 3] [--only upload,labels,...] [--latency 0,0.1] [--quick]

Every case runs at each latency (seconds added by the emulator to every API response; default 0
and 0.1, a remote tenant) against two baselines measured in the same run against the same
emulator process: a bare ``requests`` loop and the official CLI's strategy
(:mod:`benchmarks.cli_strategy`). Throughput is the median of ``--runs`` runs (one run with
latency); a ratio is the operator's throughput over the baseline's.

Parts (``--only``, comma-separated): ``upload`` (comments only), ``labels`` (with labels, and
the rerun of the unchanged file), ``throttle`` (under a token bucket at ``--bucket`` (0.7) times the
CLI strategy's own unthrottled request rate at each latency: 429s met by both, and the time), ``export``,
``stream``, ``emails`` (e-mails per second over ``sync-raw-emails``),
``drainbytes`` (bytes an object-store drain of 100 batches sends), ``memory`` (one
million comments uploaded), ``warehouse`` (a reconcile of 200,000 comments with 1 % relabelled,
at the highest ``--latency``, into SQLite and PostgreSQL, against the sliced export to JSONL; and
Parquet's writing rate: :mod:`benchmarks.bench_warehouse`). ``--quick`` runs everything small, once, to check
the harness; its figures are not for the docs.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import (
    bench_drain_bytes,
    bench_emails,
    bench_export,
    bench_memory,
    bench_stream,
    bench_upload,
    bench_warehouse,
)
from benchmarks.harness import Emulator, configure_airflow, machine

PARTS = ("upload", "labels", "throttle", "export", "stream", "emails", "drainbytes", "memory", "warehouse")


def _parts(text: str) -> set[str]:
    chosen = {p.strip() for p in text.split(",") if p.strip()}
    unknown = chosen - set(PARTS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}"
        )
    return chosen


def _latencies(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per case without latency (median); default 3")
    parser.add_argument("--only", type=_parts, default=set(PARTS), help=f"parts to run: {','.join(PARTS)}")
    parser.add_argument("--latency", type=_latencies, default=(0.0, 0.1), help="seconds per request; default 0,0.1")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: checks the harness")
    parser.add_argument("--comments", type=int, default=30_009, help="comments-only upload size (default 30,009)")
    parser.add_argument("--labelled", type=int, default=2_000, help="labelled upload size (default 2,000)")
    parser.add_argument("--export-comments", type=int, default=200_000, help="export size without latency")
    parser.add_argument(
        "--export-remote-comments",
        type=int,
        default=200_000,
        help="export size with latency (default 200,000: 782 pages, a 78 s serial bound at 100 ms)",
    )
    parser.add_argument(
        "--throttled", type=int, default=2_000, help="labelled upload size under the token bucket (default 2,000)"
    )
    parser.add_argument(
        "--bucket",
        type=float,
        default=0.7,
        help="token bucket rate, as a fraction of the CLI strategy's unthrottled request rate at that latency "
        "measured in the same run (default 0.7)",
    )
    parser.add_argument(
        "--burst-seconds", type=float, default=1.0, help="token bucket burst, in seconds of its rate (default 1)"
    )
    parser.add_argument("--emails", type=int, default=5_000, help="e-mail upload size (default 5,000 .eml files)")
    parser.add_argument("--memory-comments", type=int, default=1_000_000, help="memory case size (default 1,000,000)")
    parser.add_argument(
        "--warehouse-comments",
        type=int,
        default=bench_warehouse.DEFAULT_COMMENTS,
        help="reconcile size (default 200,000, or CM_BENCH_WAREHOUSE_COMMENTS); also run at a quarter of it",
    )
    parser.add_argument("--tracemalloc", action="store_true", help="memory case: also trace Python allocations")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
        args.comments, args.labelled, args.throttled, args.emails = 10_003, 500, 500, 1_000
        args.export_comments, args.export_remote_comments, args.memory_comments = 20_000, 5_000, 50_000
        args.warehouse_comments = 4_000
    return args


def table(rows: list[dict], args: argparse.Namespace, seconds: float) -> str:
    lines = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `benchmarks/run.py"
        f"{' --quick' if args.quick else ''} --runs {args.runs}` ({seconds / 60:.1f} min) on {machine()}; "
        "emulator in its own process.",
        "",
        "| benchmark | latency | bare `requests` loop | CLI strategy | operator | ÷ bare | ÷ CLI | goal |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ratios = [
            f"{row[k]:.2f}×" if isinstance(row[k], float) and row[k] == row[k] else "" for k in ("vs_bare", "vs_cli")
        ]
        lines.append(
            f"| {row['benchmark']} | {row['latency']} | {row['bare']} | {row['cli']} | {row['operator']} "
            f"| {ratios[0]} | {ratios[1]} | {row['goal']} |"
        )
    if any("token bucket" in row["benchmark"] for row in rows):
        lines += [
            "",
            f"¹ The bucket's rate is {args.bucket:g}× the CLI strategy's unthrottled request rate at that latency "
            f"(its first labelled run in this run, or one run of its own), its burst {args.burst_seconds:g} s of "
            "that rate; 429s are the bucket's own count; ÷ CLI is the CLI strategy's time over the operator's.",
        ]
    return "\n".join(lines)


def main() -> int:
    args = arguments()
    # Stopped with SIGTERM, still stop the emulators (the ``finally`` blocks run on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    configure_airflow()
    started = time.perf_counter()
    rows: list[dict] = []
    emulator = Emulator()
    try:
        sizes = bench_upload.Sizes(args.comments, args.labelled, args.throttled, args.bucket, args.burst_seconds)
        if args.only & {"upload", "labels", "throttle"}:
            rows += bench_upload.run(emulator, args.runs, args.latency, sizes, args.only)
        if "export" in args.only:
            rows += bench_export.run(
                emulator, args.runs, args.latency, args.export_comments, args.export_remote_comments
            )
        if "stream" in args.only:
            rows += bench_stream.run(emulator, args.runs, args.latency)
        if "emails" in args.only:
            rows += bench_emails.run(emulator, args.runs, args.latency, args.emails)
        if "drainbytes" in args.only:
            rows += bench_drain_bytes.run(emulator)
        if "warehouse" in args.only:
            rows += bench_warehouse.run(emulator, max(args.latency) or 0.1, args.warehouse_comments)
    finally:
        emulator.stop()
    if "memory" in args.only:
        rows += bench_memory.run(args.memory_comments, args.tracemalloc)
    print()
    print(table(rows, args, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
