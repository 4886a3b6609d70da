"""The layering ARCHITECTURE.md describes, checked on the source so it cannot drift unnoticed.

What each layer may import is import-linter's contracts (``[tool.importlinter]`` in pyproject.toml,
run by ``make lint``); these are the rules no contract can say.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_cm"

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


def test_operators_holds_operators_only():
    for path in sorted((PACKAGE / "operators").glob("*.py")):
        if path.name == "__init__.py":
            continue
        classes = [n.name for n in ast.parse(path.read_text(encoding="utf-8")).body if isinstance(n, ast.ClassDef)]
        assert any(name.endswith("Operator") for name in classes), f"{path.name} defines no operator: {classes}"


#: The packages whose classes Airflow must know of, and the key of get_provider_info() listing them.
REGISTERED = {"operators": "operators", "sensors": "sensors", "triggers": "triggers", "transfers": "transfers"}


def _public_classes(package: str) -> dict[str, set[str]]:
    """Module -> the Operator/Sensor/Trigger classes it defines, found by reading the source."""
    found: dict[str, set[str]] = {}
    for path in sorted((PACKAGE / package).glob("*.py")):
        names = {
            n.name
            for n in ast.parse(path.read_text(encoding="utf-8")).body
            if isinstance(n, ast.ClassDef)
            and not n.name.startswith("_")
            and n.name.endswith(("Operator", "Sensor", "Trigger"))
            and "Base" not in n.name
        }
        if names:
            found[module_name(path)] = names
    return found


def _registered_modules() -> set[str]:
    from airflow_provider_cm import get_provider_info

    info = get_provider_info()
    modules = {m for key in REGISTERED.values() for entry in info.get(key, []) for m in entry.get("python-modules", [])}
    modules |= {entry["python-module"] for entry in info.get("transfers", [])}
    return modules


@pytest.mark.parametrize("package", sorted(REGISTERED))
def test_every_operator_sensor_trigger_and_transfer_is_registered(package):
    """A module in operators/, sensors/, triggers/ or transfers/ defining such a class is in get_provider_info()."""
    missing = sorted(set(_public_classes(package)) - _registered_modules())
    assert not missing, f"register these modules in get_provider_info() (airflow_provider_cm/__init__.py): {missing}"
