"""The docs keep up with the code: every public operator, sensor, trigger and transfer has a how-to
page, and every how-to's code is included from an example DAG between markers that exist there.

The classes are found the way Airflow finds them: from the modules ``get_provider_info()`` lists.
A new operator (or a renamed marker, or a marker removed from an example DAG) fails here, not in
``make docs`` alone.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from airflow_provider_cm import get_provider_info
from tests.conftest import ROOT

DOCS = ROOT / "docs"
HOWTO = DOCS / "howto"
_INCLUDE = re.compile(r"^```\{literalinclude\}[ \t]+(?P<path>\S+)\n(?P<options>(?::[^\n]*\n)*)```", re.M)
_OPTION = re.compile(r"^:(?P<name>[\w-]+):[ \t]*(?P<value>.*)$", re.M)


def provider_modules() -> list[str]:
    info = get_provider_info()
    kinds = ("operators", "sensors", "triggers")
    modules = [module for kind in kinds for entry in info[kind] for module in entry["python-modules"]]
    return modules + [entry["python-module"] for entry in info["transfers"]]


def public_classes() -> list[type]:
    """Operators, sensors, triggers and transfers defined (not imported) in the provider's modules."""
    from airflow.sdk import BaseOperator
    from airflow.triggers.base import BaseTrigger

    found = []
    for name in provider_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                inspect.isclass(value)
                and value.__module__ == name
                and not attr.startswith("_")
                and issubclass(value, (BaseOperator, BaseTrigger))
            ):
                found.append(value)
    return found


def includes(page: Path) -> list[dict[str, str]]:
    """Each ``literalinclude`` of a page: its resolved path and options."""
    found = []
    for match in _INCLUDE.finditer(page.read_text(encoding="utf-8")):
        options = {m.group("name"): m.group("value").strip() for m in _OPTION.finditer(match.group("options"))}
        found.append({"path": str((page.parent / match.group("path")).resolve()), **options})
    return found


def included_code(include: dict[str, str]) -> str:
    """The lines ``literalinclude`` shows: after ``start-after``, before ``end-before``."""
    text = Path(include["path"]).read_text(encoding="utf-8")
    start, end = include["start-after"], include["end-before"]
    return text[text.index(start) + len(start) : text.index(end)]


HOWTOS = sorted(p for p in HOWTO.glob("*.md") if p.name != "index.md")
CLASSES = public_classes()


def test_the_provider_modules_hold_the_classes_the_docs_describe():
    names = {cls.__name__ for cls in CLASSES}
    assert len(names) >= 16, names  # 12 operators, a sensor, 2 triggers, 2 transfers at least
    assert {"CommunicationsMiningStreamSensor", "CommunicationsMiningStreamEventTrigger"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_public_class_has_a_howto_with_code_from_an_example_dag(cls):
    from airflow.sdk import BaseOperator

    pages = [p for p in HOWTOS if re.search(rf"\b{cls.__name__}\b", p.read_text(encoding="utf-8"))]
    assert pages, f"{cls.__module__}.{cls.__name__} has no how-to page under docs/howto/ naming it"
    examples = [i for page in pages for i in includes(page) if Path(i["path"]).parent == ROOT / "example_dags"]
    assert examples, f"no how-to naming {cls.__name__} includes code from example_dags/ ({[p.name for p in pages]})"
    if issubclass(cls, BaseOperator):  # an operator's how-to shows it built, not only named
        shown = [i for i in examples if i["start-after"] in Path(i["path"]).read_text(encoding="utf-8")]
        assert any(f"{cls.__name__}(" in included_code(i) for i in shown), (
            f"no how-to of {cls.__name__} includes example-DAG code that creates it"
        )


@pytest.mark.parametrize("page", HOWTOS, ids=lambda p: p.name)
def test_every_howto_includes_its_code_between_markers_the_example_dag_has(page):
    found = includes(page)
    assert found, f"{page.name} includes no code"
    for include in found:
        path = Path(include["path"])
        assert path.is_file(), f"{page.name}: {path} does not exist"
        start, end = include.get("start-after", ""), include.get("end-before", "")
        assert re.fullmatch(r"\[START howto_\w+\]", start), f"{page.name}: start-after {start!r}"
        assert end == start.replace("[START", "[END"), f"{page.name}: end-before {end!r} does not close {start!r}"
        text = path.read_text(encoding="utf-8")
        for marker in (start, end):
            assert text.count(f"# {marker}\n") == 1, f"{page.name}: {path.name} has {marker!r} {text.count(marker)}x"
        assert included_code(include).strip(), f"{page.name}: nothing between {start!r} and {end!r}"


def test_every_marker_in_the_example_dags_is_shown_in_the_docs():
    shown = {i["start-after"] for page in DOCS.rglob("*.md") if "_build" not in page.parts for i in includes(page)}
    for dag in sorted((ROOT / "example_dags").glob("*.py")):
        for marker in re.findall(r"# (\[START howto_\w+\])", dag.read_text(encoding="utf-8")):
            assert marker in shown, f"{dag.name}: {marker} is included by no docs page"


def connection_examples() -> list[tuple[str, str]]:
    """``(title, value)`` of each ``export AIRFLOW_CONN_...`` on the connection page, titled by its comment."""
    text = (DOCS / "connection.md").read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^# (?P<title>.+)\nexport AIRFLOW_CONN_\w+='(?P<value>[^']*)'", text, re.M):
        found.append((match.group("title"), match.group("value")))
    return found


def test_every_connection_example_resolves_to_the_endpoint_and_credentials_it_claims(tmp_path):
    from airflow.models.connection import Connection

    from airflow_provider_cm.client.settings import ConnectionSettings

    examples = connection_examples()
    assert {value[0] for _, value in examples} == {"{", "c"} and len(examples) >= 8  # JSON and URI forms
    bundle = tmp_path / "corporate-root.pem"
    bundle.write_text("")
    endpoints = {
        "Automation Cloud": "https://cloud.uipath.com/acme/production/reinfer_",
        "Legacy tenant": "https://acme.reinfer.io",
        "A private certificate authority": "https://acme.reinfer.io",
        "The local emulator": "http://127.0.0.1:8765",
    }
    by_title: dict[str, list[ConnectionSettings]] = {}
    for title, value in examples:
        value = value.replace("/etc/ssl/certs/corporate-root.pem", str(bundle))
        value = value.replace("<API token>", "the-token").replace("<app id>", "app").replace("<app secret>", "secret")
        value = value.replace("<scopes>", "Reinfer.Api")
        if value.startswith("{"):
            conn = Connection.from_json(value, conn_id="communications_mining_default")
        else:
            conn = Connection(conn_id="communications_mining_default", uri=value)
        assert conn.conn_type == "communications_mining", title
        settings = ConnectionSettings.from_connection(conn)
        [expected] = [url for start, url in endpoints.items() if title.startswith(start)] or [None]
        if "external application" in title:
            expected = endpoints["Automation Cloud"]
            assert settings.credentials is not None and settings.api_token is None, title
            assert (settings.credentials.client_id, settings.credentials.client_secret) == ("app", "secret"), title
        else:
            assert settings.api_token in ("the-token", "my-local-token"), title
        assert settings.endpoint == expected, title
        if "time-out" in title or (title == "Legacy tenant"):
            assert settings.read_timeout == 240, title
        by_title.setdefault(title.split(",")[0], []).append(settings)
    # The JSON and URI forms of the same connection say the same thing.
    for title, settings in by_title.items():
        said = {(s.endpoint, s.api_token, s.read_timeout, credentials_of(s)) for s in settings}
        assert len(said) == 1, (title, said)


def credentials_of(settings) -> tuple[str, ...] | None:
    c = settings.credentials
    return None if c is None else (c.client_id, c.client_secret, str(c.scope), c.token_url)


def test_the_connection_page_describes_every_field_of_the_form():
    from airflow_provider_cm.common.connection_form import CONN_FIELDS, UI_FIELD_BEHAVIOUR

    page = (DOCS / "connection.md").read_text(encoding="utf-8")
    for name, spec in CONN_FIELDS.items():
        row = re.search(rf"^\| extra `{name}` \| (?P<label>[^|]+) \|", page, re.M)
        assert row, f"the connection page has no row for the {name} extra"
        assert row.group("label").strip() == spec["label"], name
    for field, label in UI_FIELD_BEHAVIOUR["relabeling"].items():
        assert re.search(rf"^\| {field.capitalize()} \| {label} \|", page, re.M), field


#: A path in backquotes: something with a ``/`` or a file suffix, without placeholders or spaces.
_NAMED_PATH = re.compile(r"`(?P<path>[\w./-]+(?:/|\.py|\.md|\.toml))`")


def architecture_paths() -> list[str]:
    return sorted({m["path"] for m in _NAMED_PATH.finditer((ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"))})


def resolves(path: str) -> bool:
    """Whether a path ARCHITECTURE.md names exists: from the repository's root, the package's, or
    (a bare file name, in a list under its folder) anywhere in the package."""
    package = ROOT / "airflow_provider_cm"
    if (ROOT / path).exists() or (package / path).exists():
        return True
    return "/" not in path.rstrip("/") and any(package.rglob(path.rstrip("/")))


def test_every_path_architecture_md_names_exists():
    paths = architecture_paths()
    assert len(paths) > 40, "the pattern no longer finds ARCHITECTURE.md's paths"
    missing = [path for path in paths if not resolves(path)]
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"


def test_the_path_check_catches_a_path_that_is_gone():
    assert resolves("hooks/communications_mining.py") and resolves("tenant.py")
    gone = "hooks/" + "transport.py"  # moved to client/ (spelt apart so no path rewrite touches it)
    assert not resolves(gone) and not resolves("hooks/no_such_module.py")
