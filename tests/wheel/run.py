"""The release check (``make test-wheel``): the built distributions, installed as a user installs them.

1. ``python -m build`` makes the sdist, then the wheel from that sdist (so a file missing from the
   sdist is missing from the wheel too); ``twine check --strict`` checks both.
2. The wheel must hold ``LICENSE`` and ``NOTICE`` (``.dist-info/licenses``), ``py.typed`` and every
   file of the package in the checkout (the emulator's among them); its metadata must name no
   development extra and only the user-facing ones, with extract-msg behind ``msg``.
3. On the oldest and the newest supported Airflow (``tests/compat/targets.py``, with the tier's pins
   where Airflow's constraints file cannot be fetched), a fresh virtual environment gets Airflow and
   the wheel (``[emulator]`` only: the minimal dependencies plus what serves the emulator), never the
   checkout. From that installation, in a folder outside the checkout: Airflow's ProvidersManager
   (what ``airflow providers list`` prints) lists the provider, ``airflow providers hooks`` its
   hook, extract-msg is absent (the ``msg`` extra), the emulator starts from the installed package
   (``python -m airflow_provider_cm.emulator``) and ``airflow dags test cm_setup`` (the example DAG,
   copied into a DAGs folder as a user's DAG file) creates its project, source, dataset and stream
   there.

Environments are rebuilt every run (uv's cache makes that seconds); each step's time is printed.
Usage: ``python -m tests.wheel.run [--target NAME ...]``.
"""

from __future__ import annotations

import argparse
import email
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import tomllib
from packaging.version import Version

from tests.compat.run import find_python, uv
from tests.compat.targets import TARGETS, Target

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / ".wheel"
DIST = HOME / "dist"
TOKEN = "wheel-check-token"
#: The extras a user may install; nothing else may be published (the tools are dependency groups).
USER_EXTRAS = {"duckdb", "emulator", "messaging", "msg", "openlineage", "parquet", "postgres", "sqlite"}


def say(message: str) -> None:
    print(f"wheel: {message}", flush=True)


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def build() -> tuple[Path, Path]:
    """The sdist and the wheel built from it, checked by twine."""
    shutil.rmtree(DIST, ignore_errors=True)
    run([sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(DIST), str(ROOT)])
    [sdist] = DIST.glob("*.tar.gz")
    [wheel] = DIST.glob("*.whl")
    run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)])
    return sdist, wheel


def package_files() -> set[str]:
    """The package's files in the checkout, as a wheel names them (tracked by git, byte code aside)."""
    listed = run(["git", "ls-files", "airflow_provider_cm"], cwd=ROOT).stdout.split()
    return {name for name in listed if not name.endswith(".pyc")}


def check_contents(sdist: Path, wheel: Path) -> None:
    """Licence, notice, py.typed and every package file are in the wheel; its metadata is a user's."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata_name] = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = email.message_from_string(archive.read(metadata_name).decode("utf-8"))
    dist_info = metadata_name.rsplit("/", 1)[0]
    required = {f"{dist_info}/licenses/LICENSE", f"{dist_info}/licenses/NOTICE", "airflow_provider_cm/py.typed"}
    missing = sorted((required | package_files()) - names)
    assert not missing, f"the wheel lacks {missing}"
    assert "Apache License" in zipfile.ZipFile(wheel).read(f"{dist_info}/licenses/LICENSE").decode()
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "NOTICE", "pyproject.toml", "PKG-INFO"} <= in_sdist, f"{top}: {sorted(in_sdist)[:20]}"
    assert metadata["License-Expression"] == "Apache-2.0", metadata["License-Expression"]
    assert set(metadata.get_all("License-File") or ()) == {"LICENSE", "NOTICE"}, metadata.get_all("License-File")
    extras = set(metadata.get_all("Provides-Extra") or ())
    assert extras == USER_EXTRAS, f"published extras {sorted(extras)}, expected {sorted(USER_EXTRAS)}"
    requires = metadata.get_all("Requires-Dist") or []
    unconditional = [r for r in requires if "extra ==" not in r]
    assert not [r for r in unconditional if r.startswith("extract-msg")], unconditional
    assert any(r.startswith("extract-msg") and 'extra == "msg"' in r for r in requires), requires
    assert any(r.startswith("apache-airflow-providers-common-compat") for r in unconditional), unconditional
    say(f"{wheel.name}: {len(names)} files, LICENSE, NOTICE, py.typed and all {len(package_files())} package files")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The runtime dependencies that come with Airflow: on the oldest Airflow each is pinned at the floor
#: ``pyproject.toml`` declares, so that the declared range is one a tier has run.
AT_THEIR_FLOORS = ("requests", "tenacity", "httpx", "pendulum", "msgspec")


def floors() -> list[str]:
    """``name==floor`` for each of :data:`AT_THEIR_FLOORS`, read from ``pyproject.toml``'s dependencies."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = []
    for requirement in declared:
        name, _, floor = requirement.partition(">=")
        if name in AT_THEIR_FLOORS:
            pinned.append(f"{name}=={floor}")
    assert len(pinned) == len(AT_THEIR_FLOORS), f"no floor declared for some of {AT_THEIR_FLOORS}: {declared}"
    return pinned


def environment(target: Target, wheel: Path, *, at_floors: bool = False) -> Path:
    """A fresh virtual environment with Airflow (and the tier's pins) and the wheel with its emulator extra.

    :param at_floors: pin the dependencies that come with Airflow at the floors the package declares.
    """
    venv = HOME / target.name
    shutil.rmtree(venv, ignore_errors=True)
    run([uv(), "venv", "--quiet", "--python", find_python(target.python), str(venv)])
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    requirements = [f"apache-airflow=={target.airflow}", *target.pins, f"{wheel}[emulator]"]
    if at_floors:
        requirements += floors()
    run([uv(), "pip", "install", "--quiet", *requirements], env=env)
    return venv


def check_installation(target: Target, venv: Path) -> None:
    """From the installed wheel only: the provider listed, the emulator served, ``cm_setup`` run against it."""
    work = Path(tempfile.mkdtemp(prefix=f"cm-wheel-{target.name}-"))
    bin_dir = venv / "bin"
    dags = work / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "example_dags" / "cm_setup.py", dags / "cm_setup.py")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "AIRFLOW_HOME", "VIRTUAL_ENV"}}
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(work / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT": json.dumps(
                {"conn_type": "communications_mining", "host": f"{url}/acme/production/reinfer_", "password": TOKEN}
            ),
            "CM_SOURCE": "wheel/inbox",
            "CM_DATASET": "wheel/support",
            "CM_STREAM": "new-messages",
        }
    )
    python = str(bin_dir / "python")

    def step(name: str, command: list[str]) -> str:
        started = time.monotonic()
        done = run(command, cwd=work, env=env)
        say(f"{target.name}: {name} in {time.monotonic() - started:.1f} s")
        return done.stdout + done.stderr

    # One interpreter for where the provider was imported from and what `airflow providers list` prints
    # (ProvidersManager's providers): one Airflow start-up fewer per target.
    probe = (
        "import json, importlib.util as u, airflow_provider_cm\n"
        "from airflow.providers_manager import ProvidersManager\n"
        "info = ProvidersManager().providers['airflow-provider-cm']\n"
        "print(json.dumps({'file': airflow_provider_cm.__file__, 'version': info.version,\n"
        "    'package_version': airflow_provider_cm.__version__,\n"
        "    'extract_msg': u.find_spec('extract_msg') is not None}))"
    )
    found = json.loads(step("providers listed", [python, "-c", probe]).strip().splitlines()[-1])
    where = found["file"]
    installed = str(venv / "lib") in where and "site-packages" in where
    assert installed, f"the provider came from {where}, not the installed wheel"
    assert not found["extract_msg"], "extract-msg is installed without the msg extra"
    assert found["version"] == found["package_version"], found
    hooks = step("providers hooks", [str(bin_dir / "airflow"), "providers", "hooks", "-o", "json"])
    assert "communications_mining" in hooks and "airflow_provider_cm" in hooks, hooks[-2000:]
    step("db migrate", [str(bin_dir / "airflow"), "db", "migrate"])
    emulator = subprocess.Popen(
        [python, "-m", "airflow_provider_cm.emulator", "--port", str(port), "--token", TOKEN],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(port, emulator)
        step("dags test cm_setup", [str(bin_dir / "airflow"), "dags", "test", "cm_setup"])
        check = (
            "import json, sys, urllib.request as r\n"
            f"q = r.Request('{url}/api/v1/datasets/wheel/support', headers={{'Authorization': 'Bearer {TOKEN}'}})\n"
            "print(json.load(r.urlopen(q))['dataset']['name'])"
        )
        assert step("the dataset is there", [python, "-c", check]).strip().endswith("support")
    finally:
        emulator.terminate()
        emulator.wait(timeout=15)
    shutil.rmtree(work, ignore_errors=True)


def wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the installed emulator exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the installed emulator did not start in 60 s")


def oldest_and_newest() -> list[Target]:
    """The targets with the oldest and the newest Airflow (the oldest's Python where two share a release)."""
    ordered = sorted(TARGETS, key=lambda t: Version(t.airflow))
    return [ordered[0], ordered[-1]] if ordered[0] != ordered[-1] else [ordered[0]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target", action="append", help="a target of tests/compat/targets.py (default: the oldest and newest)"
    )
    args = parser.parse_args(argv)
    chosen = [t for t in TARGETS if t.name in args.target] if args.target else oldest_and_newest()
    if not chosen:
        parser.error("unknown target; see python -m tests.compat.run --list")
    started = time.monotonic()
    HOME.mkdir(exist_ok=True)
    sdist, wheel = build()
    say(f"built {sdist.name} and {wheel.name}, twine check passed, in {time.monotonic() - started:.1f} s")
    check_contents(sdist, wheel)
    passed = failed = 0
    for target in chosen:
        began = time.monotonic()
        try:
            at_floors = target == oldest_and_newest()[0]
            venv = environment(target, wheel, at_floors=at_floors)
            what = f" ({', '.join(AT_THEIR_FLOORS)} at their floors)" if at_floors else ""
            say(f"{target.name}: fresh environment with the wheel{what} in {time.monotonic() - began:.1f} s")
            check_installation(target, venv)
        except (AssertionError, SystemExit) as exc:
            failed += 1
            say(f"{target.name}: FAILED: {exc}")
        else:
            passed += 1
            say(f"{target.name}: ok in {time.monotonic() - began:.1f} s")
    say(f"done in {time.monotonic() - started:.0f} s")
    print(f"wheel: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
