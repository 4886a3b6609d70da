"""A property-based fuzz of the emulator against its own OpenAPI document (schemathesis).

For every API operation the document lists, schemathesis generates requests (valid and invalid
bodies, query and path parameters) from the document and checks each answer: never a 5xx, always
a status the operation documents, with the documented content type and a body that matches the
documented schema. In ``make test`` the run is bounded (a few examples per operation), seeded and
derandomized, so it finds the same cases every time; ``make fuzz`` (``HYPOTHESIS_PROFILE=fuzz``,
:mod:`tests.fuzzing`) runs it on many more random examples per operation.

The fuzz runs against an emulator application of its own, in this process (schemathesis's ASGI
client, a ``requests`` session whose transport calls the application: no socket, no server
process), so nothing it creates lingers in the session's emulator. Most requests name a project,
source, dataset, comment, stream and model version that exist (see :func:`_aim`), so bodies
reach the routes' logic rather than stopping at a 404; one in four keeps the generated names.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.python.asgi import get_client
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import TOKEN, make_record
from tests.fuzzing import PROFILE

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SEED = 20261122
#: Examples per operation and mode: more where there is a body or a query to vary. Generating a body from
#: the schema costs most of the run (up to 0.2 s an example), so ``make test`` sends 12 and 4, the
#: same seeded ones every run; ``make fuzz`` 100 and 25, random ones.
FUZZING = PROFILE == "fuzz"
EXAMPLES_WITH_INPUT = 100 if FUZZING else 12
EXAMPLES_WITHOUT_INPUT = 25 if FUZZING else 4
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

PROJECT, SOURCE, DATASET, COMMENT, STREAM = "fuzz", "inbox", "support", "c1", "watch"


class Target:
    """The fuzz's own emulator application (in this process) and the objects requests are aimed at."""

    def __init__(self, app: Any) -> None:
        self.app = app
        #: Only schemathesis's ASGI client answers for this address: it is never resolved.
        self.url = "http://testserver"
        #: A ``requests`` session whose transport hands each request to ``app`` in this process.
        self.session = get_client(app).__enter__()
        self.session.headers.update(AUTH)
        self.source_id = ""
        #: How many fuzz requests got each status.
        self.statuses: dict[int, int] = {}

    def _call(self, method: str, path: str, body: Any = None, allowed: tuple[int, ...] = (200,)) -> dict[str, Any]:
        response = self.session.request(method, f"{self.url}/{path}", json=body, timeout=30)
        assert response.status_code in allowed, (method, path, response.status_code, response.text)
        return response.json()

    def ensure(self) -> None:
        """Create (again) what the requests are aimed at: it may have been deleted or changed."""
        self._call("PUT", f"api/_private/projects/{PROJECT}", {}, (200, 409))
        self._call("PUT", f"api/v1/sources/{PROJECT}/{SOURCE}", {"source": {}}, (200, 409))
        self.source_id = self._call("GET", f"api/v1/sources/{PROJECT}/{SOURCE}")["source"]["id"]
        dataset = {"dataset": {"source_ids": [self.source_id]}}
        self._call("PUT", f"api/v1/datasets/{PROJECT}/{DATASET}", dataset, (200, 409))
        self._call("POST", f"api/v1/datasets/{PROJECT}/{DATASET}", dataset)
        comment = make_record(COMMENT, "2026-10-01T00:00:00Z", "where is my card")["comment"]
        self._call("POST", f"api/v1/sources/{PROJECT}/{SOURCE}/sync", {"comments": [comment]})
        labelling = {"labelling": [{"group": "default", "assigned": [{"name": "Card"}]}]}
        self._call("POST", f"api/_private/datasets/{PROJECT}/{DATASET}/labellings/{self.uid}", labelling)
        if not self._call("GET", f"api/v1/datasets/{PROJECT}/{DATASET}/model-tags")["model_tags"]:
            self._call("POST", f"_emulator/datasets/{PROJECT}/{DATASET}/models", {"tag": "live"})
        stream = {"stream": {"name": STREAM, "model": {"version": 1}}}
        self._call("PUT", f"api/v1/datasets/{PROJECT}/{DATASET}/streams", stream)

    @property
    def uid(self) -> str:
        return f"{self.source_id}.{COMMENT}"


@pytest.fixture(scope="module")
def target(report: Any) -> Iterator[Target]:
    from airflow_provider_cm.emulator.app import create_app

    target = Target(create_app(TOKEN))
    try:
        target.ensure()
        yield target
        if target.statuses:
            report(
                f"schema fuzz: {sum(target.statuses.values())} requests, by status {sorted(target.statuses.items())}"
            )
    finally:
        target.session.__exit__(None, None, None)


def _times() -> Any:
    """RFC 3339 times; one in three on the first or last day a ``datetime`` holds, with an offset.

    Schemathesis's own ``date-time`` values rarely put an offset on the edges of the calendar,
    where a time leaves the range once converted to UTC.
    """
    clock = st.builds("{:02d}:{:02d}:{:02d}".format, st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
    numoffset = st.builds("{}{:02d}:{:02d}".format, st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59))
    anywhere = st.builds("{}T{}{}".format, st.dates().map(date.isoformat), clock, st.just("Z") | numoffset)
    edges = st.builds("{}T{}{}".format, st.sampled_from(["0001-01-01", "9999-12-31"]), clock, numoffset)
    return st.one_of(anywhere, anywhere, edges)


schemathesis.openapi.format("date-time", _times())


def _document() -> dict[str, Any]:
    """The emulator's OpenAPI document, built in-process (what ``/openapi.json`` serves)."""
    from airflow_provider_cm.emulator.app import create_app

    app = create_app(TOKEN)
    while not hasattr(app, "openapi"):
        app = app.app
    return app.openapi()


def _config() -> SchemathesisConfig:
    config = SchemathesisConfig()
    config.update(seed=SEED, max_failures=None)
    config.projects.default.update(headers=AUTH)
    config.projects.default.generation.update(max_examples=EXAMPLES_WITH_INPUT, deterministic=True)
    return config


DOCUMENT = _document()
#: Not bound to an application (``from_asgi`` would bind them): schemathesis then generates other
#: cases, and these are the cases the fuzz always sent. They reach the application through
#: :attr:`Target.session` instead.
OPERATIONS = {
    op.label: op
    for op in (r.ok() for r in schemathesis.openapi.from_dict(DOCUMENT, config=_config()).get_all_operations())
}


#: Path parameters aimed at existing objects; the create routes keep generated names.
_CREATES = {
    "PUT /api/_private/projects/{project}": ("project",),
    "PUT /api/v1/sources/{project}/{name}": ("name",),
    "PUT /api/v1/datasets/{project}/{name}": ("name",),
}


def _aim(case: Any, target: Target) -> None:
    """Point three requests in four at the objects :meth:`Target.ensure` made."""
    parameters = case.path_parameters or {}
    if not parameters or zlib.crc32(repr(sorted(parameters.items())).encode()) % 4 == 0:
        return
    kept = _CREATES.get(f"{case.method.upper()} {case.operation.path}", ())
    name = SOURCE if case.operation.path.startswith(("/api/v1/sources", "/api/_private/sources")) else DATASET
    aimed = {
        "project": PROJECT,
        "name": name,
        "comment_id": COMMENT,
        "uid": target.uid,
        "stream": STREAM,
        "version": "live",
    }
    for key, value in aimed.items():
        if key in parameters and key not in kept:
            parameters[key] = value


def _takes_input(label: str) -> bool:
    """Whether an operation reads a body or query parameters (there is invalid input to send)."""
    method, path = label.split(" ", 1)
    operation = DOCUMENT["paths"][path][method.lower()]
    return "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", []))


#: Every operation with valid input; those that read a body or a query with invalid input too.
RUNS = [(label, GenerationMode.POSITIVE) for label in sorted(OPERATIONS)] + [
    (label, GenerationMode.NEGATIVE) for label in sorted(OPERATIONS) if _takes_input(label)
]


@pytest.mark.parametrize(("label", "mode"), RUNS, ids=[f"{label} {mode.value}" for label, mode in RUNS])
def test_every_operation_answers_as_documented(label: str, mode: GenerationMode, target: Target) -> None:
    operation = OPERATIONS[label]

    @settings(
        derandomize=not FUZZING,
        max_examples=EXAMPLES_WITH_INPUT if _takes_input(label) else EXAMPLES_WITHOUT_INPUT,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=FUZZING,
    )
    @given(case=operation.as_strategy(mode))
    def fuzz(case: Any) -> None:
        _aim(case, target)
        checks = CHECKS if mode is GenerationMode.POSITIVE else [*CHECKS, negative_data_rejection]
        response = case.call_and_validate(session=target.session, base_url=target.url, headers=AUTH, checks=checks)
        target.statuses[response.status_code] = target.statuses.get(response.status_code, 0) + 1
        if case.method.upper() == "DELETE" or operation.path == "/api/v1/datasets/{project}/{name}":
            target.ensure()

    (fuzz if FUZZING else seed(SEED)(fuzz))()


def test_the_document_covers_every_api_route_and_hides_the_emulator_routes(target: Target) -> None:
    document = target.session.get(f"{target.url}/openapi.json", timeout=30).json()
    assert document == DOCUMENT
    assert document["components"]["securitySchemes"]["bearerToken"] == {"type": "http", "scheme": "bearer"}
    assert not [path for path in document["paths"] if path.startswith("/_emulator")]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (method, path)
            assert {"200", "401", "429"} <= set(operation["responses"]), (method, path)
            throttled = operation["responses"]["429"]["content"]["application/json"]["schema"]
            assert throttled == {"$ref": "#/components/schemas/Error"}, (method, path)
    sync = document["paths"]["/api/v1/sources/{project}/{name}/sync"]["post"]
    comment = sync["requestBody"]["content"]["application/json"]["schema"]["properties"]["comments"]["items"]
    assert comment["required"] == ["id", "timestamp", "messages"]


_IDS = {"comment_id": COMMENT, "uid": "0." + COMMENT, "version": "live"}


def test_every_operation_the_document_secures_refuses_a_request_without_the_token(target: Target) -> None:
    """The bearer scheme is enforced where the document says so, and only the token route is open."""
    open_operations = []
    for path, item in DOCUMENT["paths"].items():
        url = target.url + path.format(organisation="acme", project=PROJECT, name=DATASET, stream=STREAM, **_IDS)
        for method, operation in item.items():
            if operation.get("security", DOCUMENT["security"]) == []:
                open_operations.append(f"{method.upper()} {path}")
                continue
            response = target.session.request(method, url, headers={"Authorization": "Bearer wrong"}, timeout=30)
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.json()["status"] == "error"
    assert open_operations == ["POST /{organisation}/identity_/connect/token"]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_time_the_schema_admits_but_utc_cannot_hold_is_refused_with_400(target: Target, moment: str) -> None:
    comment = make_record("edge", moment)["comment"]
    response = target.session.post(f"{target.url}/api/v1/sources/{PROJECT}/{SOURCE}/sync", json={"comments": [comment]})
    assert response.status_code == 400, response.text
    assert "out of range" in response.json()["message"]


def test_a_comment_from_year_one_reads_back_as_an_rfc_3339_time_the_emulator_accepts(target: Target) -> None:
    comment = make_record("year-one", "0001-01-01T10:00:00Z")["comment"]
    sync = f"{target.url}/api/v1/sources/{PROJECT}/{SOURCE}/sync"
    assert target.session.post(sync, json={"comments": [comment]}).json()["new"] == 1
    stored = target.session.get(f"{target.url}/api/v1/sources/{PROJECT}/{SOURCE}/comments/year-one").json()["comment"]
    assert stored["timestamp"] == "0001-01-01T10:00:00.000000Z"
    again = {k: stored[k] for k in ("id", "timestamp", "messages")}
    assert target.session.post(sync, json={"comments": [again]}).json()["unchanged"] == 1


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_a_body_with_a_number_json_cannot_carry_is_refused(target: Target, number: str) -> None:
    """Python reads these, but what was stored from them would be answered as something not JSON."""
    body = (
        '{"comments": [{"id": "inf", "timestamp": "2026-10-01T00:00:00Z", "messages": [{"body": {"text": "a"}}],'
        f' "user_properties": {{"number:Spend": {number}}}}}]}}'
    )
    response = target.session.post(
        f"{target.url}/api/v1/sources/{PROJECT}/{SOURCE}/sync",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["message"] == "request body is not valid JSON"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            f"api/v1/sources/{PROJECT}/{SOURCE}/sync",
            '{"comments": [{"id": "half", "timestamp": "2026-10-01T00:00:00Z",'
            ' "messages": [{"body": {"text": "a \\ud83d"}}]}]}',
        ),
        (f"api/v1/sources/{PROJECT}/half-title", '{"source": {"title": "\\uDC00"}}'),
    ],
)
def test_a_body_with_half_a_surrogate_pair_is_refused_and_nothing_is_stored(
    target: Target, path: str, body: str
) -> None:
    """Stored, such a string could never be answered: every later read of it (or of a list holding it) failed."""
    headers = {"Content-Type": "application/json"}
    method = "POST" if path.endswith("sync") else "PUT"
    response = target.session.request(method, f"{target.url}/{path}", data=body.encode(), headers=headers)
    assert response.status_code == 400, response.text
    assert "lone surrogate" in response.json()["message"]
    assert target.session.get(f"{target.url}/api/v1/sources/{PROJECT}").status_code == 200
    pair = body.replace("\\ud83d", "\\ud83d\\ude00").replace("\\uDC00", "\\uD83D\\uDE00")
    assert (
        target.session.request(method, f"{target.url}/{path}", data=pair.encode(), headers=headers).status_code == 200
    )


def test_a_deeply_nested_body_is_refused_or_stored_and_readable_never_a_500(target: Target) -> None:
    """Python's JSON reader and writer count nesting against the recursion limit; no depth may
    be stored (or half-stored) and then fail to be written out."""
    sync = f"{target.url}/api/v1/sources/{PROJECT}/{SOURCE}/sync"
    for depth in [*range(700, 1000, 9), 100_000]:
        markup = "[" * depth + "]" * depth
        body = (
            f'{{"comments": [{{"id": "deep{depth}", "timestamp": "2026-10-01T00:00:00Z",'
            f' "messages": [{{"body": {{"text": "a", "text_markup": {markup}}}}}]}}]}}'
        )
        response = target.session.post(sync, data=body, headers={"Content-Type": "application/json"})
        assert response.status_code in (200, 400), (depth, response.text)
        read = target.session.get(f"{target.url}/api/v1/sources/{PROJECT}/{SOURCE}/comments/deep{depth}")
        assert read.status_code == (200 if response.status_code == 200 else 404), depth
    assert response.json()["message"] == "request body is nested too deeply"
