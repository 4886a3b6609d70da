"""Declared = tested: ``pyproject.toml``, the docs and the README claim exactly what the compatibility tier runs."""

from __future__ import annotations

import re

from tests.compat.targets import TARGETS
from tests.conftest import ROOT

PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS_INDEX = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def lower_bound(pattern: str) -> str:
    found = re.search(pattern, PYPROJECT)
    assert found, pattern
    return found.group(1)


def test_the_lower_bounds_are_the_oldest_targets():
    oldest_airflow = min((t.airflow for t in TARGETS), key=version_key)
    oldest_python = min((t.python for t in TARGETS), key=version_key)
    assert lower_bound(r'"apache-airflow>=([0-9.]+)"') == oldest_airflow
    assert lower_bound(r'requires-python = ">=([0-9.]+)"') == oldest_python
    assert "apache-airflow<" not in PYPROJECT and 'requires-python = ">=3.10,<' not in PYPROJECT  # no upper caps


def test_every_python_classifier_is_between_the_tested_minors():
    tested = sorted({version_key(t.python) for t in TARGETS})
    declared = sorted(version_key(v) for v in re.findall(r"Programming Language :: Python :: (3\.\d+)", PYPROJECT))
    assert declared[0] == tested[0] and declared[-1] == tested[-1], (declared, tested)


def test_the_docs_support_table_names_every_target():
    table = DOCS_INDEX[DOCS_INDEX.index("### Supported Airflow and Python") :]
    table = table[: table.index("```{toctree}")]
    for target in TARGETS:
        assert target.airflow in table, f"the docs' support table does not name Airflow {target.airflow}"
        assert f"Python {target.python}" in table, f"the docs' support table does not name Python {target.python}"


def test_the_readme_states_the_supported_range_and_links_the_table():
    oldest_airflow = ".".join(min((t.airflow for t in TARGETS), key=version_key).split(".")[:2])
    pythons = sorted({t.python for t in TARGETS}, key=version_key)
    assert f"Apache Airflow {oldest_airflow} or newer and Python {pythons[0]} to {pythons[-1]}" in README
    assert "(docs/index.md#supported-airflow-and-python)" in README
