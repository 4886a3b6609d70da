"""The compatibility tier (``make test-compat``): every target of ``targets.py`` in its own virtual environment.

For each target: its environment under ``.compat/<target>`` is built once with ``uv`` (Airflow
and the test tools, from uv's cache after the first time) and rebuilt only when the target or
the provider's requirements change; the provider is reinstalled (editable, no dependencies) on
every run. Then pytest runs ``tests/compat`` and the version-sensitive test files there, and the
target's deployment cases, if it has any. A summary gives each target's outcome and time; the
exit status is non-zero if any target failed.

Usage: ``python -m tests.compat.run [--target NAME ...] [--list]``.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.compat.targets import TARGETS, VERSION_SENSITIVE, Target

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / ".compat"
#: What a target's environment holds beside Airflow: the provider's extras the tests use ...
EXTRAS = "sqlite,postgres,openlineage,messaging,msg,parquet,duckdb"
#: ... and the test tools, pyproject's dependency group ``test`` (PEP 735; not in the published metadata).
TEST_GROUP = f"{ROOT / 'pyproject.toml'}:test"


def uv() -> str:
    """The ``uv`` beside this Python (a dev dependency), else on ``PATH``."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise SystemExit("uv is not installed: run `make test-compat`, which installs the dev dependencies")
    return found


def find_python(minor: str) -> str:
    """An interpreter of Python ``minor`` (e.g. ``"3.10"``): pyenv's, else ``pythonX.Y`` on ``PATH``."""
    roots = [os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")]
    candidates = sorted(
        (path for root in roots for path in glob.glob(f"{root}/versions/{minor}.*/bin/python{minor}")),
        key=lambda path: [int(part) for part in Path(path).parents[1].name.split(".") if part.isdigit()],
        reverse=True,
    )
    candidates += [path for path in (shutil.which(f"python{minor}"),) if path]
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        )
        if probe.returncode == 0 and probe.stdout.strip() == minor:
            return candidate
    raise SystemExit(f"no Python {minor} found (tried {candidates or 'pyenv and PATH'})")


def requirements(target: Target) -> list[str]:
    return [f"apache-airflow=={target.airflow}", *target.pins, "-e", f"{ROOT}[{EXTRAS}]", "--group", TEST_GROUP]


def fingerprint(target: Target, python: str) -> str:
    """What the environment was built from: the target, the interpreter and the provider's requirements."""
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    spec = json.dumps({"requirements": requirements(target), "python": python}).encode()
    return hashlib.sha256(spec + pyproject).hexdigest()


def environment(target: Target, log: list[str]) -> Path:
    """The target's virtual environment, built if missing or stale; the provider reinstalled in it."""
    venv = HOME / target.name
    python = find_python(target.python)
    stamp = venv / ".target"
    wanted = fingerprint(target, python)
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    if not stamp.exists() or stamp.read_text() != wanted:
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([uv(), "venv", "--quiet", "--python", python, str(venv)], check=True)
        # A pre-release of Airflow pulls its own pre-release task SDK; every other package stays on releases.
        subprocess.run([uv(), "pip", "install", "--quiet", *requirements(target)], check=True, env=env)
        stamp.write_text(wanted)
        log.append(f"built in {time.monotonic() - started:.0f} s")
    else:
        subprocess.run([uv(), "pip", "install", "--quiet", "--no-deps", "-e", str(ROOT)], check=True, env=env)
        log.append("reused")
    return venv


def pytest(venv: Path, target: Target, args: list[str], log_path: Path) -> int:
    env = {
        **os.environ,
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "CM_COMPAT_AIRFLOW": target.airflow,
        "CM_COMPAT_PYTHON": target.python,
    }
    env.pop("PYTHONPATH", None)
    # pyproject's filterwarnings apply as in `make test`: a deprecation warned from the provider's code is an error.
    command = [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", *args]
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        return subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode


#: pytest's closing line, e.g. ``141 passed, 2 skipped in 201.24s (0:03:21)``.
CLOSING_LINE = re.compile(r"^=*\s*(\d+ (passed|failed|errors?|skipped|deselected|xfailed)\b.* in [\d.]+s.*?)\s*=*$")


def summary_line(log_path: Path) -> str:
    """The last pytest closing line in ``log_path`` (log lines that merely mention an error are not one)."""
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    closing = [match.group(1) for line in lines if (match := CLOSING_LINE.match(line.strip()))]
    return closing[-1] if closing else "no result"


def run_target(target: Target) -> tuple[bool, str]:
    started = time.monotonic()
    HOME.mkdir(exist_ok=True)
    log_path = HOME / f"{target.name}.log"
    log_path.write_text("", encoding="utf-8")
    notes: list[str] = []
    venv = environment(target, notes)
    outcomes = [pytest(venv, target, ["-q", "tests/compat", *VERSION_SENSITIVE], log_path)]
    results = [summary_line(log_path)]
    if target.deployment:
        outcomes.append(pytest(venv, target, ["-q", "-m", "deployment", *target.deployment], log_path))
        results.append("deployment: " + summary_line(log_path))
    ok = all(code == 0 for code in outcomes)
    elapsed = time.monotonic() - started
    outcome = "ok" if ok else "FAILED"
    line = f"{target.name}: {outcome} in {elapsed:.0f} s (environment {notes[0]}); {'; '.join(results)}"
    if not ok:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-150:]
        print("\n".join(tail), flush=True)
    return ok, line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", help="run only this target (repeatable); see --list")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for target in TARGETS:
            print(f"{target.name}\tairflow {target.airflow}\tpython {target.python}\tpins {' '.join(target.pins)}")
        return 0
    chosen = [t for t in TARGETS if not args.target or t.name in args.target]
    unknown = set(args.target or ()) - {t.name for t in TARGETS}
    if unknown or not chosen:
        parser.error(f"unknown target(s) {sorted(unknown)}; see --list")
    started = time.monotonic()
    lines, failed = [], 0
    for target in chosen:
        print(f"compat: {target.name} ...", flush=True)
        ok, line = run_target(target)
        failed += not ok
        lines.append(line)
        print(line, flush=True)
    print(f"\ncompatibility tier in {time.monotonic() - started:.0f} s:")
    print("\n".join(lines))
    print(f"compat: {len(chosen) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
