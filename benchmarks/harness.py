"""What every benchmark needs: an emulator in its own process, a connection to it, timing."""

from __future__ import annotations

import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def banking77_records() -> list[dict]:
    with open(BANKING77, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]
