"""What the docs say about the example DAGs' Assets holds for the DAGs as Airflow parses them.

* Each how-to names the Asset or AssetAlias its operator declares as a pattern
  (``communications_mining_export/<project>/<dataset>``,
  ``AssetAlias("communications_mining_table:<task_id>")``). Every outlet of every task the page's
  included code creates (read from the DagBag, as the dag-processor parses the example DAGs)
  must be one of those patterns filled in with the task's own arguments. A page that claims one
  Asset while its example declares another fails here: a DAG scheduled on the claimed Asset would
  never run, and nothing would say so.
* Every example DAG parses with the optional providers absent (the extras ``messaging``,
  ``openlineage``, ``sqlite``, ``postgres``): no broken DAG for a user who installed the provider
  alone; a DAG that needs an extra says which in its docstring.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_internals import dag_bag
from tests.conftest import ROOT
from tests.unit.test_docs import HOWTOS, included_code, includes

EXAMPLES = ROOT / "example_dags"
#: An Asset name, URI or AssetAlias name in the provider's schemes, with ``<placeholders>``.
_PATTERN = re.compile(r"communications[-_]mining[\w-]*(?::/|/|:)[\w<>/:.-]*<[\w<>/:.-]*")
#: The optional providers behind the extras, and the extra each comes with.
OPTIONAL = {
    "airflow.providers.common.messaging": "messaging",
    "airflow.providers.openlineage": "openlineage",
    "airflow.providers.sqlite": "sqlite",
    "airflow.providers.postgres": "postgres",
}


@pytest.fixture(scope="module")
def bag() -> Any:
    found = dag_bag(str(EXAMPLES))
    assert found.import_errors == {}, found.import_errors
    return found


def patterns(page: Path) -> set[str]:
    return {match.rstrip(".:") for match in _PATTERN.findall(page.read_text(encoding="utf-8"))}


def fill(pattern: str, values: dict[str, str]) -> str | None:
    """``pattern`` with each ``<name>`` replaced by ``values[name]``; None if a value is missing."""
    missing = [name for name in re.findall(r"<(\w+)>", pattern) if name not in values]
    if missing:
        return None
    return re.sub(r"<(\w+)>", lambda m: values[m.group(1)], pattern)


def values_of(task: Any) -> dict[str, str]:
    """The placeholders a task's arguments fill: project, dataset, source, stream, sql_conn_id, table, task_id."""
    values = {"task_id": task.task_id}
    for attr in ("stream", "sql_conn_id", "table"):
        if isinstance(getattr(task, attr, None), str):
            values[attr] = getattr(task, attr)
    for attr in ("dataset", "source"):
        full = getattr(task, attr, None)
        if isinstance(full, str) and "/" in full:
            values["project"], values[attr] = full.split("/", 1)
    return values


def declared(outlet: Any) -> list[str]:
    """The names an outlet is known by: an Asset's name and URI, an AssetAlias's name."""
    from airflow.sdk import Asset, AssetAlias

    if isinstance(outlet, Asset):
        return [outlet.name, outlet.uri]
    assert isinstance(outlet, AssetAlias), outlet
    return [outlet.name]


def dag_of(bag: Any, path: str) -> Any:
    [dag] = [d for d in bag.dags.values() if Path(d.fileloc).resolve() == Path(path).resolve()]
    return dag


def scheduled_on(dag: Any) -> list[Any]:
    """The Assets of a DAG's schedule (a list of Assets, as the examples give it)."""
    condition = dag.timetable.asset_condition
    return list(getattr(condition, "objects", [condition]))


PAGES = [page for page in HOWTOS if patterns(page)]


def test_the_pages_that_name_assets_are_found():
    names = {page.stem for page in PAGES}
    assert {"export_dataset", "to_sql", "stream_to_sql", "upload_emails", "stream_event_trigger"} <= names, names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_each_outlet_of_a_howtos_example_is_the_asset_the_page_names(page, bag):
    claimed = patterns(page)
    checked = 0
    for include in includes(page):
        if Path(include["path"]).parent != EXAMPLES:
            continue
        dag = dag_of(bag, include["path"])
        code = included_code(include)
        for task_id in re.findall(r'task_id="(\w+)"', code):
            task = dag.get_task(task_id)
            values = values_of(task)
            said = {filled for pattern in claimed if (filled := fill(pattern, values))}
            for outlet in task.outlets:
                for name in declared(outlet):
                    assert name in said, (
                        f"{page.name}: {dag.dag_id}.{task_id} declares {name!r}, which the page does not name "
                        f"(it names {sorted(claimed)})"
                    )
                    checked += 1
        if "schedule=[" in code:  # the page shows the Asset its DAG is scheduled on
            streams = [values_of(task) for task in dag.tasks if isinstance(getattr(task, "stream", None), str)]
            for asset in scheduled_on(dag):
                name = asset.name
                said = {filled for pattern in claimed for v in streams if (filled := fill(pattern, v))}
                assert name in said, f"{page.name}: {dag.dag_id} is scheduled on {name!r}, not named ({claimed})"
                checked += 1
    assert checked, f"{page.name} names Assets ({sorted(claimed)}) but its examples declare none"


def test_the_report_dag_is_scheduled_on_the_table_the_stream_drain_loads(bag):
    from airflow_provider_cm.common.assets import table_asset

    drain = bag.dags["cm_stream_to_warehouse"].get_task("drain_into_warehouse")
    target = table_asset(drain.sql_conn_id, drain.table)
    report = bag.dags["cm_stream_results_report"]
    scheduled = scheduled_on(report)
    assert [(a.name, a.uri) for a in scheduled] == [(target.name, target.uri)]
    assert [o.name for o in drain.outlets] == ["communications_mining_table:drain_into_warehouse"]  # resolves to it
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert f"`{target.name}`" in page


# Airflow itself starts first (its plugins are found through the installed providers' entry points,
# which an uninstalled provider would not have); then the optional providers, and every module of
# the provider that could hold one of them, are dropped and their imports refused, and the DAGs parsed.
_PARSE_WITHOUT = """
import json, sys

from tests.airflow_internals import dag_bag
import airflow.dag_processing.dagbag, airflow.plugins_manager

blocked = json.loads(sys.argv[1])

def is_blocked(name):
    return any(name == b or name.startswith(b + ".") for b in blocked)

class Block:
    def find_spec(self, name, path=None, target=None):
        if is_blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: its extra is not installed)")

for name in list(sys.modules):
    if is_blocked(name) or name == "airflow_provider_cm" or name.startswith("airflow_provider_cm."):
        del sys.modules[name]
sys.meta_path.insert(0, Block())
bag = dag_bag(sys.argv[2])
print(json.dumps({"errors": {k: str(v)[-500:] for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}))
"""


def test_every_example_dag_parses_without_the_optional_providers(bag):
    import json

    done = subprocess.run(
        [sys.executable, "-c", _PARSE_WITHOUT, json.dumps(sorted(OPTIONAL)), str(EXAMPLES)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}, parsed["errors"]
    missing = set(bag.dags) - set(parsed["dags"])
    for dag_id in sorted(missing):  # left out for want of an extra: its docstring names the extra
        doc = bag.dags[dag_id].doc_md or ""
        needs = [extra for extra in OPTIONAL.values() if f"``{extra}`` extra" in doc or f"[{extra}]" in doc]
        assert needs, f"{dag_id} needs an optional provider, and its docstring names no extra"
    assert missing <= {"cm_stream_queue_events"}, missing
    assert "cm_stream_queue_events" in bag.dags  # with the extra installed, the DAG is there
