"""The provider on the installed Airflow's APIs: its private uses are where it looks, and it triggers no deprecation.

Run by ``make test`` and, on every Airflow and Python of the matrix, by the compatibility tier
(``tests/compat/targets.py`` lists this file among the version-sensitive ones): a private name that
moves, or an Airflow deprecation the provider starts to trigger, fails here on the minor where it happens.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cm.common.compat import (
    AIRFLOW_VERSION,
    PRIVATE_AIRFLOW_USES,
    PrivateAirflowUse,
    private_use_resolves,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_provider_cm"

#: Airflow's modules the provider may import freely: the task SDK's public interface, Airflow's exceptions
#: and triggers, the version, and the providers (each its own distribution with its own public API).
PUBLIC = ("airflow", "airflow.sdk", "airflow.sdk.exceptions", "airflow.sdk.log", "airflow.exceptions")
PUBLIC_PREFIXES = ("airflow.providers.", "airflow.triggers.")
#: Imported only for type annotations (under ``TYPE_CHECKING``), never at run time.
TYPING_ONLY = ("airflow.sdk.types",)


def airflow_imports() -> set[tuple[str, str, str]]:
    """``(module, name, file)`` of every ``from airflow... import name`` in the provider outside the public modules."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            module = node.module
            if not (module == "airflow" or module.startswith("airflow.")):
                continue
            if module in PUBLIC or module in TYPING_ONLY or module.startswith(PUBLIC_PREFIXES):
                continue
            for alias in node.names:
                found.add((module, alias.name, path.relative_to(ROOT).as_posix()))
    return found


def listed(module: str, name: str) -> bool:
    """Whether ``from module import name`` is one of :data:`PRIVATE_AIRFLOW_USES` (or imports the module of one)."""
    return any(
        (use.module, use.name) == (module, name) or use.module == f"{module}.{name}" for use in PRIVATE_AIRFLOW_USES
    )


def test_every_private_airflow_import_is_listed_with_why():
    """compat.PRIVATE_AIRFLOW_USES is the whole list: a new private import fails here until it is listed."""
    unlisted = sorted(
        f"{file}: from {module} import {name}" for module, name, file in airflow_imports() if not listed(module, name)
    )
    assert not unlisted, "private Airflow imports not in compat.PRIVATE_AIRFLOW_USES:\n" + "\n".join(unlisted)
    assert all(use.why for use in PRIVATE_AIRFLOW_USES)


@pytest.mark.parametrize("use", PRIVATE_AIRFLOW_USES, ids=lambda use: f"{use.module}.{use.name}")
def test_each_private_airflow_use_is_where_the_provider_looks(use: PrivateAirflowUse):
    """On the Airflow where the provider reaches it, the private name is still there (else: it moved, adapt compat)."""
    if not use.used():
        pytest.skip(f"not used on Airflow {AIRFLOW_VERSION}: {use.why}")
    assert private_use_resolves(use), f"Airflow {AIRFLOW_VERSION} has no {use.module}.{use.name}, which {use.why}"


def test_a_moved_private_name_is_found_missing():
    """The check above can fail: a name that is not there does not resolve."""
    gone = PrivateAirflowUse("airflow.sdk.execution_time.task_runner", "NO_SUCH_NAME", "a probe")
    moved = PrivateAirflowUse("airflow.sdk.no_such_module", "get_hostname", "a probe")
    assert not private_use_resolves(gone) and not private_use_resolves(moved)


def test_mask_secret_and_xcom_come_from_common_compat():
    """The public location official providers use for them (``apache-airflow-providers-common-compat``)."""
    source = (PACKAGE / "common" / "compat.py").read_text(encoding="utf-8")
    assert "from airflow.providers.common.compat.sdk import mask_secret" in source
    assert "from airflow.providers.common.compat.sdk import XCom" in source
    from airflow.providers.common.compat.sdk import XCom

    try:
        from airflow.providers.common.compat.sdk import mask_secret
    except ImportError:  # common-compat before 1.23 (1.20 is the newest for Python 3.10): the Task SDK's own
        from airflow.sdk.log import mask_secret
    assert callable(mask_secret) and hasattr(XCom, "get_value")


#: Run in a fresh interpreter so that import-time warnings fire: Airflow first (its own warnings are not the
#: provider's), then everything the provider does without a server: every module imported, the provider info
#: read through ProvidersManager, the connection form built, every example DAG parsed as the DAG processor does.
#: The probes (modules that warn as a provider module would, for the check's own test) are imported first.
SCRIPT = r"""
import importlib, json, os, pkgutil, sys, warnings

import airflow, airflow.sdk  # Airflow's own import-time warnings are not the provider's
from airflow.exceptions import AirflowProviderDeprecationWarning, RemovedInAirflow4Warning

AIRFLOW_DEPRECATIONS = (AirflowProviderDeprecationWarning, RemovedInAirflow4Warning)
examples, probes = sys.argv[1], sys.argv[2:]
seen = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for probe in probes:
        importlib.import_module(probe)
    import airflow_provider_cm
    for module in pkgutil.walk_packages(airflow_provider_cm.__path__, "airflow_provider_cm."):
        try:
            importlib.import_module(module.name)
        except ImportError as exc:  # an optional extra that is not installed (the compatibility tier has them all)
            message = f"{module.name}: {exc}"
            seen.append({"category": "ImportError", "message": message, "file": "", "deprecation": False})
    from airflow.providers_manager import ProvidersManager
    manager = ProvidersManager()
    info = manager.providers["airflow-provider-cm"]
    hooks = manager.hooks
    assert "communications_mining" in hooks, sorted(hooks)
    from airflow_provider_cm.common.connection_form import connection_type
    connection_type()
    from tests.airflow_internals import dag_bag
    bag = dag_bag(examples)
    assert bag.dags and not bag.import_errors, bag.import_errors
    parse = [text for texts in bag.captured_warnings.values() for text in texts]
for item in caught:
    seen.append({
        "category": f"{item.category.__module__}.{item.category.__qualname__}",
        "message": str(item.message),
        "file": f"{item.filename}:{item.lineno}",
        "airflow": issubclass(item.category, AIRFLOW_DEPRECATIONS),
        "deprecation": issubclass(item.category, DeprecationWarning),
    })
print(json.dumps({"warnings": seen, "parse_warnings": parse, "dags": len(bag.dags)}))
"""

#: The probe of the check's own test: a module that warns at import as a provider module would.
PROBE = "cm_deprecation_probe"


@pytest.fixture(scope="module")
def warnings_seen(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """What :data:`SCRIPT` saw, run once for the module with :data:`PROBE` (a fresh interpreter importing all of
    Airflow costs seconds); and the folder of the probe, which is no part of the provider."""
    tmp_path = tmp_path_factory.mktemp("deprecations")
    (tmp_path / f"{PROBE}.py").write_text(
        "import warnings\nfrom airflow.exceptions import RemovedInAirflow4Warning\n"
        "warnings.warn('probe of Airflow 4', RemovedInAirflow4Warning, stacklevel=1)\n"
        "warnings.warn('probe of a library', DeprecationWarning, stacklevel=1)\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "example_dags"), PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dags"] >= 5
    return report, tmp_path


def deprecations(report: dict[str, Any], root: Path, leave_out: Path | None = None) -> list[Any]:
    """The deprecation warnings in ``report`` that are Airflow's or warned from code under ``root``; those warned
    from code under ``leave_out`` left out (the probe's, when the provider's own are wanted)."""
    warned = [w for w in report["warnings"] if not (leave_out and w["file"].startswith(str(leave_out)))]
    bad: list[Any] = [w for w in warned if w.get("airflow") or (w["deprecation"] and w["file"].startswith(str(root)))]
    bad += [w for w in report["parse_warnings"] if "Deprecat" in w or "RemovedInAirflow4" in w]
    return bad


def test_the_provider_triggers_no_deprecation_of_airflow(warnings_seen: tuple[dict[str, Any], Path]) -> None:
    """Importing, registering and parsing the provider's DAGs triggers no AirflowProviderDeprecationWarning,
    no RemovedInAirflow4Warning and no deprecation warned from the provider's own code, on this Airflow.

    Running tasks is covered by pyproject's ``filterwarnings``: every test of the suite fails on a
    deprecation warned from the provider's modules.
    """
    report, probe_folder = warnings_seen
    bad = deprecations(report, PACKAGE, leave_out=probe_folder)
    assert not bad, f"on Airflow {AIRFLOW_VERSION} the provider triggers deprecations:\n" + json.dumps(bad, indent=1)


def test_the_deprecation_check_sees_an_airflow_deprecation_warned_from_provider_code(
    warnings_seen: tuple[dict[str, Any], Path],
) -> None:
    """The check above can fail: a RemovedInAirflow4Warning, or a plain DeprecationWarning, warned from code under
    the provider's root is reported (here the probe module, imported in the same interpreter, stands for a
    provider module, and its folder for the provider's root)."""
    report, probe_folder = warnings_seen
    bad = deprecations(report, root=probe_folder)
    messages = sorted(w["message"] for w in bad if isinstance(w, dict))
    assert messages == ["probe of Airflow 4", "probe of a library"], bad
