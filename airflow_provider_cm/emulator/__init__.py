"""A local UiPath Communications Mining API, for running DAGs and tests without a tenant.

Start it as a process::

    python -m airflow_provider_cm.emulator --host 127.0.0.1 --port 8765 --token <token> [--state FILE]

or in-process with :class:`EmulatorServer`. It serves real HTTP under any path prefix, so a
connection host of ``http://127.0.0.1:8765`` and one of ``http://127.0.0.1:8765/org/tenant/reinfer_``
both work.

Layout: one module per API resource in :mod:`.routes`, each with its routes (a FastAPI
``APIRouter``, its paths from :mod:`airflow_provider_cm.api.routes`) and its logic:
:mod:`.routes.projects`, :mod:`.routes.sources`, :mod:`.routes.comments`, :mod:`.routes.datasets`,
:mod:`.routes.labellings` (annotations), :mod:`.routes.export`, :mod:`.routes.streams` (definitions,
exceptions), :mod:`.routes.stream_batches` (fetch, results, advance, reset),
:mod:`.routes.model_versions`, :mod:`.routes.predictions`, :mod:`.routes.oauth` (the identity
server) and :mod:`.routes.admin` (the emulator-only ``/_emulator/...`` routes). Each route module
parses and checks a request, then changes the tenant only through :mod:`.state.tenant`'s methods
(which mark what they change); :mod:`.state.store` runs that under its lock and journals and saves
it (:mod:`.state.journal`, :mod:`.state.persistence`); :mod:`.fault_injection.knobs` holds the test
knobs (faults, rate limit, latency, OAuth tokens, request counters) apart from the data;
:mod:`.state.records` holds the stored dataclasses; :mod:`.rules.checks` the body schemas' building
blocks; :mod:`.app` only assembles routers and the layers of :mod:`.middleware` and
:mod:`.fault_injection.layer`.

The OpenAPI document (``GET /openapi.json``, with the token) describes every API route: its
body rule as JSON Schema, built by the same :mod:`.rules.checks` builders the route enforces, its query
and path parameters, the bearer-token scheme, its ``200`` envelope (:mod:`.schemas`) and the
error envelope under each status it answers (:mod:`.openapi`). ``tests/unit/emulator/test_schema.py``
fuzzes every operation against it with schemathesis.

Responses follow the vendor's own contracts: the official CLI's response types (``reinfer/cli``,
crate ``api``, ``api/src/resources/*.rs``) and the Power Automate connector's Swagger 2.0
(``reinfer/power-automate-connector``, ``apiDefinition.swagger.json``, 2021). Where they disagree,
the newer CLI wins:

* ``sync`` answers ``new``, ``updated`` and ``unchanged`` (the CLI requires them; the Swagger's
  ``SyncCommentsResponse`` allows only ``status``);
* stream ``fetch`` answers ``is_end_sequence`` (the CLI requires it; the Swagger's
  ``PollTriggerResponse`` forbids other fields);
* streams are ``streams`` with ``stream`` bodies (the Swagger's ``triggers`` / ``trigger`` are
  served as aliases) and are updated with ``PUT`` on the collection (the Swagger's ``POST`` on
  the item is served too);
* ``model.label_thresholds`` is always a list in a stream (the CLI requires it; the Swagger
  requires 1 to 4096 items when given): a stream created without thresholds shows ``[]``, and
  ``[]`` sent back means the same, every label;
* a stream comment's ``labels`` use list-form names (the CLI) and the connector's ``source_id`` on
  result comments is not sent (the CLI's ``Comment`` has no such field; the uid carries it);
* ``bucket_id`` is left out when unset: the Swagger types it string and the CLI ignores it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_cm.emulator.server import EmulatorServer

__all__ = ["EmulatorServer"]


def __getattr__(name: str) -> Any:
    if name == "EmulatorServer":
        from airflow_provider_cm.emulator.server import EmulatorServer

        return EmulatorServer
    raise AttributeError(name)
