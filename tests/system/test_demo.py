"""``make demo`` as a newcomer runs it: its output holds only lines about the user's data.

Airflow's own warnings (``AssetModel ... not found; cannot create asset event``, ``empty
cryptography key``) read like errors about the data; the demo sets up what keeps them out. Any
other line, a new warning of a newer Airflow included, fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

LABELS = (
    *("Input:", "Emulator:", "Seeded:", "Split:", "Model:", "Uploaded:", "Exported:", "Warehouse:", "Stream:"),
    *("Activity:", "Caught up:"),
)


def test_the_demo_prints_only_lines_about_the_data(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CM_"))}
    run = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "run_demo.py"), "--workdir", str(tmp_path / "demo")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = (run.stdout + run.stderr).splitlines()
    assert run.returncode == 0, "\n".join(output[-40:])
    other = [line for line in output if not line.startswith((*LABELS, "Predicted:"))]
    assert other == [], "the demo printed lines that are not about the data:\n" + "\n".join(other[:20])
    assert output[-1].startswith("Predicted:") and "(20 billed)" in output[-1]
