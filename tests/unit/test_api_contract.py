"""The vendor's facts live in ``api/`` only: each limit, each route (and its resend rule), the time format.

The hook and the emulator read them from there; these checks fail if either writes one itself.
"""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

import pytest
from starlette.routing import Route as StarletteRoute

from airflow_provider_cm.api import comment_schema, email_limits, limits, routes
from airflow_provider_cm.api.times import api_time, at_or_after, parse_time
from airflow_provider_cm.client.transport import ApiCall

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_cm"
API = PACKAGE / "api"

#: Every limit name the contract defines (api/limits.py, the e-mail and comment limits).
LIMIT_NAMES = (
    set(limits.LIMITS)
    | {n for n in vars(email_limits) if n.startswith("MAX_")}
    | {n for n in vars(comment_schema) if n.startswith("MAX_")}
)
#: How a route's path starts: a string outside api/ starting so is a route written twice.
ROUTE_PREFIXES = ("api/", "/api/", "auth/", "/auth/")


def outside_api() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if API not in p.parents]


def assigned_limits(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, name)`` of each assignment to a contract limit's name."""
    found = []
    for node in ast.walk(tree):
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        found += [(node.lineno, t.id) for t in targets if isinstance(t, ast.Name) and t.id in LIMIT_NAMES]
    return found


def route_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, text)`` of each string (or f-string) that starts like an API path."""
    found = []
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in ast.walk(tree):
        if id(node) in parts:
            continue
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            text = str(node.values[0].value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if text.startswith(ROUTE_PREFIXES):
            found.append((node.lineno, text))
    return found


def test_every_limit_is_defined_in_api_only():
    offences = [
        f"{path.relative_to(PACKAGE)}:{line}: {name}"
        for path in outside_api()
        for line, name in assigned_limits(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not offences, "import these limits from airflow_provider_cm.api:\n" + "\n".join(offences)


def test_every_route_path_is_written_in_api_only():
    offences = [
        f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
        for path in outside_api()
        for line, text in route_literals(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not offences, "take these paths from airflow_provider_cm.api.routes:\n" + "\n".join(offences)


def test_the_checks_catch_a_limit_or_a_route_written_twice():
    tree = ast.parse('MAX_SYNC_COMMENTS = 5\nx: int = 1\npath = f"api/v1/sources/{p}/sync"\nother = "/auth/user"\n')
    assert assigned_limits(tree) == [(1, "MAX_SYNC_COMMENTS")]
    assert [line for line, _ in route_literals(tree)] == [3, 4]
    assert not route_literals(ast.parse('"""GET /api/v1/sources, as documented."""'))


def test_the_emulator_serves_exactly_the_route_table():
    from airflow_provider_cm.emulator.app import create_app

    app = create_app("token")
    while not hasattr(app, "routes"):  # the middleware layers in front of FastAPI
        app = app.app
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, StarletteRoute)
        and not route.path.startswith(("/_emulator", "/{organisation}", "/openapi"))
        for method in route.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    table = {(r.method, r.url) for r in routes.ROUTES.values()}
    assert served == table, f"served, not in the table: {served - table}; in the table, not served: {table - served}"


@pytest.mark.parametrize(
    ("method", "path", "resend"),
    [
        ("GET", "api/v1/sources/p/s", True),
        ("POST", "api/v1/sources/p/s/sync", True),
        ("POST", "api/v1/datasets/p/d/streams/s/fetch", True),
        ("POST", "api/v1/datasets/p/d/labellers/3/predict", False),
        ("POST", "api/v1/datasets/p/d/labellers/3/predict-raw-emails", False),
        ("GET", "api/v1/unknown", False),
        ("POST", "api/v1/sources/p/s/unknown", False),
    ],
)
def test_a_request_is_resent_only_where_the_route_table_allows(method, path, resend):
    assert routes.may_resend(method, path) is resend
    assert ApiCall.to_api("http://cm", method, path).idempotent is resend
    assert ApiCall.to_api("http://cm", method, path, idempotent=True).idempotent


def test_the_most_specific_route_wins():
    assert routes.route_of("POST", "api/v1/sources/p/s/sync") is routes.SYNC_COMMENTS
    assert routes.route_of("GET", "api/v1/sources/id:abc") is routes.LIST_PROJECT_SOURCES
    assert routes.GET_COMMENT.at("p", "s", "a/b c") == "api/v1/sources/p/s/comments/a%2Fb%20c"
    with pytest.raises(ValueError, match="takes 3 segments"):
        routes.GET_COMMENT.at("p", "s")


def test_the_time_format_is_rfc_3339_for_every_year():
    first = datetime(1, 1, 1, tzinfo=timezone.utc)
    assert api_time(first) == "0001-01-01T00:00:00.000000Z"
    assert parse_time(api_time(first), "t") == first
    assert api_time(datetime(2026, 10, 1, 12, tzinfo=timezone.utc)) == "2026-10-01T12:00:00.000000Z"
    assert at_or_after("2026-10-01T12:00:00Z", datetime(2026, 10, 1, 12, tzinfo=timezone.utc))
    with pytest.raises(ValueError, match="not a valid ISO-8601 time"):
        parse_time("yesterday", "t")
