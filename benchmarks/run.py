"""Run the benchmarks and print the table for the README.

    python benchmarks/run.py [--runs 3]

Throughput is the median of ``--runs`` runs; the ratio is operator throughput over the
baseline's, both measured in this run against the same emulator process.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_export, bench_stream, bench_upload
from benchmarks.harness import Emulator, configure_airflow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["upload", "export", "stream"], help="run one benchmark")
    args = parser.parse_args()
    configure_airflow()
    emulator = Emulator()
    try:
        rows = []
        if args.only in (None, "upload"):
            rows += bench_upload.run(emulator, args.runs)
        if args.only in (None, "export"):
            rows += bench_export.run(emulator, args.runs)
        if args.only in (None, "stream"):
            rows += bench_stream.run(emulator, args.runs)
    finally:
        emulator.stop()
    print(f"\nPython {platform.python_version()}, {platform.machine()}, emulator in its own process\n")
    print("| benchmark | bare `requests` loop | operator | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else ""
        print(f"| {row['benchmark']} | {row['baseline']} | {row['operator']} | {ratio} | {row['target']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
