"""The README's quick start and the getting-started page, typed as written on a fresh machine.

Their ``bash`` blocks run verbatim with bash, each page in a new shell, in a fresh copy of the
working tree (what ``git ls-files`` lists, committed or not) with ``../shared`` beside it, a new
``HOME``, no ``AIRFLOW_*`` or ``CM_*`` variable and no virtual environment active; the quick start
first, then the getting-started page, which goes on from what the quick start left. Each must
end by printing the number its page promises ("the last number: **N**").

The pages' emulator listens on their port 8765. Where ``unshare`` can give the shells a network
namespace of their own (root, or unprivileged user namespaces), that port is theirs alone and a
user's emulator on 8765 is neither hit nor in the way; elsewhere the test refuses to start while
the port is taken. The virtual environment needs the package index, so ``make venv`` (the quick
start's own first command) runs once before, outside the namespace, with uv's and pip's caches
of the machine: the quick start's ``make venv`` then finds it made.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED_DATA

PORT = 8765
_BASH = re.compile(r"^```bash\n(?P<code>.*?)^```", re.M | re.S)
_PROMISE = re.compile(r"[Tt]he last (?:number|line)[^*]*\*\*(?P<number>\d+)\*\*")


def quick_start(readme: str) -> str:
    """The README's quick-start block."""
    section = readme[readme.index("## Quick start") :]
    section = section[: section.index("\n## ", 1)]
    return _BASH.search(section).group("code")  # type: ignore[union-attr]


def blocks(page: str) -> str:
    """Every ``bash`` block of a page, in order, as one script."""
    return "\n".join(match.group("code") for match in _BASH.finditer(page))


def promised(page: str) -> str:
    found = _PROMISE.findall(page)
    assert len(found) == 1, f"the page promises {found!r} as its last number"
    return found[0]


def fresh_copy(tmp: Path) -> Path:
    """The working tree's files (tracked and new, not ignored) under ``tmp``, ``shared`` beside it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    clone = tmp / "airflow-provider-cm"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    (tmp / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)
    return clone


def cache_dir(tool: list[str]) -> str | None:
    try:
        found = subprocess.run([*tool, "cache", "dir"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


def new_shell_environment(home: Path) -> dict[str, str]:
    """The machine's environment as a new login would have it: no Airflow or provider settings,
    no virtual environment, a new HOME; the package caches and the pip configuration of the
    machine kept, so the install reuses what is downloaded already."""
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "CM_", "PYTEST", "VIRTUAL_ENV", "PYTHONPATH", "COV_"))
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["HOME"] = str(home)
    uv_cache = os.environ.get("UV_CACHE_DIR") or cache_dir([str(ROOT / ".venv" / "bin" / "uv")])
    pip_cache = os.environ.get("PIP_CACHE_DIR") or cache_dir([str(ROOT / ".venv" / "bin" / "python"), "-m", "pip"])
    env.update({k: v for k, v in (("UV_CACHE_DIR", uv_cache), ("PIP_CACHE_DIR", pip_cache)) if v})
    for config in (Path.home() / ".config" / "pip" / "pip.conf", Path.home() / ".pip" / "pip.conf"):
        if config.is_file() and "PIP_CONFIG_FILE" not in env:
            env["PIP_CONFIG_FILE"] = str(config)
    return env


def own_network() -> list[str]:
    """The command prefix that runs bash in a network namespace of its own, or [] if none can be had."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return []
    for flags in (["-n"], ["-rn"]) if os.geteuid() == 0 else (["-rn"],):
        prefix = ["unshare", *flags, "sh", "-c", 'ip link set lo up && exec "$@"', "isolated"]
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return []


def port_is_free() -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", PORT))
        except OSError:
            return False
    return True


def run_page(name: str, script: str, clone: Path, env: dict[str, str], prefix: list[str]) -> list[str]:
    """``script`` in a new bash at the clone's root, stopping at the first failing command; its output."""
    path = clone.parent / f"{name}.sh"
    # Stop at the first failing command, and leave no emulator behind if one does.
    path.write_text("set -eo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script, encoding="utf-8")
    done = subprocess.run(
        [*prefix, "bash", str(path)],
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    output = (done.stdout + done.stderr).splitlines()
    (clone.parent / f"{name}.log").write_text("\n".join(output), encoding="utf-8")
    assert done.returncode == 0, f"{name} failed ({done.returncode}):\n" + "\n".join(output[-60:])
    return [line for line in done.stdout.splitlines() if line.strip()]


def test_the_quick_start_and_getting_started_run_verbatim_on_a_fresh_machine(tmp_path, report):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    first, then = quick_start(readme), blocks(page)
    assert first.startswith("make venv") and "kill %1" in first and "kill %1" in then
    prefix = own_network()
    if not prefix and not port_is_free():
        pytest.fail(f"port {PORT}, the docs' emulator port, is in use and no network namespace can be had")
    started = time.monotonic()
    clone = fresh_copy(tmp_path)
    (tmp_path / "home").mkdir()
    env = new_shell_environment(tmp_path / "home")
    install = subprocess.run(["make", "venv"], cwd=clone, env=env, capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    installed = time.monotonic()

    quick = run_page("quick-start", first, clone, env, prefix)
    assert quick[-1] == promised(readme), quick[-20:]
    assert not (tmp_path / "home" / "airflow").exists()  # AIRFLOW_HOME was set: nothing under ~/airflow
    assert (clone / ".airflow" / "emulator.json").is_file()  # the emulator stopped and kept its data

    hour = run_page("getting-started", then, clone, env, prefix)
    assert hour[-1] == promised(page), hour[-20:]
    predicted = [line for line in hour if line.startswith("('new-")]
    assert len(predicted) == 3, hour[-20:]
    report(
        f"first hour: make venv {installed - started:.0f} s, quick start and getting started "
        f"{time.monotonic() - installed:.0f} s ({'own network namespace' if prefix else 'host network'})"
    )
