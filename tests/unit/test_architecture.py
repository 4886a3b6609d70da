"""The layering ARCHITECTURE.md describes, checked on the source so it cannot drift unnoticed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_cm"

#: Modules that need no Airflow: the emulator, the client pipeline, the upload's records and checks.
WITHOUT_AIRFLOW = (
    "airflow_provider_cm.emulator.app",
    "airflow_provider_cm.emulator.__main__",
    "airflow_provider_cm.client.transport",
    "airflow_provider_cm.client.retry",
    "airflow_provider_cm.client.auth",
    "airflow_provider_cm.client.settings",
    "airflow_provider_cm.client.pacing",
    "airflow_provider_cm.client.concurrency",
    "airflow_provider_cm.client.export_slices",
    "airflow_provider_cm.api.comment_schema",
    "airflow_provider_cm.pipelines.comments.comment_files",
    "airflow_provider_cm.pipelines.comments.comment_validation",
    "airflow_provider_cm.pipelines.comments.annotation_changes",
    "airflow_provider_cm.pipelines.comments.spool",
    "airflow_provider_cm.pipelines.comments.upload_tally",
    "airflow_provider_cm.pipelines.comments.id_hashes",
    "airflow_provider_cm.pipelines.emails",
    "airflow_provider_cm.pipelines.emails.documents",
    "airflow_provider_cm.pipelines.emails.readers",
    "airflow_provider_cm.api.email_limits",
    "airflow_provider_cm.pipelines.emails.upload",
)

#: Emulator modules allowed to change the tenant's objects directly.
TENANT_OWNERS = {"tenant.py", "persistence.py", "store.py", "records.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports (at any level, including TYPE_CHECKING blocks)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def test_the_package_has_no_import_cycle():
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: imports_of(path, set(paths)) for name, path in paths.items()}
    cycles = []

    def visit(node: str, trail: list[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in done:
                done.add(nxt)
                visit(nxt, [*trail, nxt], done)

    for name in sorted(graph):
        visit(name, [name], {name})
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))


def _changes_state(node: ast.AST) -> str | None:
    """What a statement changes directly, if it assigns into an object's attribute or item or touches."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "touch":
        return "calls touch()"
    targets: list[ast.expr] = []
    if isinstance(node, (ast.Assign, ast.Delete)):
        targets = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    for target in targets:
        root = target
        while isinstance(root, (ast.Attribute, ast.Subscript)):
            root = root.value
        if isinstance(root, ast.Name) and root.id in {"store", "dataset", "source", "stream", "project", "tenant"}:
            if target is not root:
                return f"assigns into {ast.unparse(target)}"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = node.func.value
        if (
            node.func.attr in {"pop", "append", "extend", "update", "clear", "setdefault", "remove", "insert"}
            and isinstance(owner, ast.Attribute)
            and isinstance(owner.value, ast.Name)
            and owner.value.id in {"store", "dataset", "source", "stream", "tenant"}
        ):
            return f"calls {ast.unparse(node.func)}()"
    return None


def test_emulator_resources_change_the_tenant_only_through_its_methods():
    offences = []
    for path in sorted((PACKAGE / "emulator").rglob("*.py")):
        if path.name in TENANT_OWNERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            what = _changes_state(node)
            if what:
                offences.append(f"{path.name}:{node.lineno}: {what}")
    assert not offences, "change the tenant through emulator.tenant.Tenant's methods:\n" + "\n".join(offences)


def test_the_state_check_catches_a_direct_change():
    """The check above would fail on the kinds of change it exists to catch."""
    for code in (
        "store.touch('x')",
        "dataset.streams[name] = stream",
        "store.billed_comments += 1",
        "del store.datasets[key]",
        "source.comments.pop(key)",
    ):
        assert any(_changes_state(node) for node in ast.walk(ast.parse(code))), code
    assert not any(_changes_state(node) for node in ast.walk(ast.parse("out['name'] = 1\nrows.append(x)")))


@pytest.mark.parametrize("module", WITHOUT_AIRFLOW)
def test_client_and_emulator_modules_import_without_airflow(module):
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'airflow' or name.startswith('airflow.'):\n"
        "            raise ImportError('imports Airflow: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"import {module}\n"
    )
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]


def test_operators_holds_operators_only():
    for path in sorted((PACKAGE / "operators").glob("*.py")):
        if path.name == "__init__.py":
            continue
        classes = [n.name for n in ast.parse(path.read_text(encoding="utf-8")).body if isinstance(n, ast.ClassDef)]
        assert any(name.endswith("Operator") for name in classes), f"{path.name} defines no operator: {classes}"


@pytest.mark.parametrize("layer", ["operators", "sensors", "triggers", "transfers"])
def test_operators_sensors_and_triggers_never_speak_http_themselves(layer):
    """Only the hook builds URLs and sends requests (``requests``/``httpx`` live in hooks/)."""
    for path in sorted((PACKAGE / layer).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not names & {"requests", "httpx", "urllib3"}, f"{path.name} imports {names & {'requests', 'httpx'}}"
