"""What every benchmark needs: an emulator in its own process, a connection to it, timing, data."""

from __future__ import annotations

import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
BANKING77 = (ROOT / ".." / "shared" / "data" / "banking77" / "comments.jsonl").resolve()
TOKEN = "bench-" + secrets.token_hex(16)


def configure_airflow() -> None:
    home = tempfile.mkdtemp(prefix="cm-bench-airflow-")
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )


class Emulator:
    """The emulator in a separate process, so its CPU and memory are not the client's."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_cm.emulator", "--port", str(self.port), "--token", TOKEN],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.05)
        os.environ["AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT"] = json.dumps(
            {"conn_type": "communications_mining", "host": self.url, "password": TOKEN}
        )

    def set_latency(self, seconds: float) -> None:
        """Delay every API response by ``seconds``, as a remote tenant would."""
        import requests

        requests.post(
            f"{self.url}/_emulator/faults",
            json={"latency": seconds},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ).raise_for_status()

    def set_rate_limit(self, requests_per_second: float | None, burst: float | None = None) -> None:
        """Throttle every API token with a token bucket (429 and ``Retry-After``); ``None`` lifts it."""
        import requests

        limit = {} if requests_per_second is None else {"requests_per_second": requests_per_second, "burst": burst}
        requests.post(
            f"{self.url}/_emulator/faults",
            json={"rate_limit": {k: v for k, v in limit.items() if v is not None}},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ).raise_for_status()

    def stats(self) -> dict:
        """The emulator's counters (requests per route, requests throttled, billed comments...)."""
        import requests

        response = requests.get(f"{self.url}/_emulator/stats", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        response.raise_for_status()
        return response.json()["stats"]

    def admin_pin(self, dataset: str, tag: str = "live") -> int:
        """Pin a model version trained on the dataset's labels (emulator-only route)."""
        import requests

        response = requests.post(
            f"{self.url}/_emulator/datasets/{dataset}/models",
            json={"tag": tag},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        )
        response.raise_for_status()
        return response.json()["version"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


def best_of(runs: int, function: Callable[[], object]) -> float:
    """Median wall time in seconds of ``runs`` calls."""
    return statistics.median(timed(function) for _ in range(runs))


def timed(function: Callable[[], object]) -> float:
    """Wall time in seconds of one call."""
    return timed_result(function)[0]


def timed_result(function: Callable[..., T], *args: Any) -> tuple[float, T]:
    """Wall time in seconds of one call, and what it returned."""
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def median(values: list[float]) -> float:
    return statistics.median(values)


def banking77_records() -> list[dict]:
    with open(BANKING77, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def write_corpus(path: Path, count: int, *, labelled: bool = True, tag: str = "") -> int:
    """Write ``count`` BANKING77 records (repeated with new ids ``<id>-<tag><copy>``) as JSONL."""
    records = banking77_records()
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(count):
            record = records[i % len(records)]
            comment = dict(record["comment"], id=f"{record['comment']['id']}-{tag}{i // len(records)}")
            line = {"comment": comment, "labelling": record["labelling"]} if labelled else {"comment": comment}
            handle.write(json.dumps(line) + "\n")
    return count


def machine() -> str:
    """CPU count, Python and platform, for the table's header."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()} {platform.machine()}; load average {load:.1f} at the end"
    )
