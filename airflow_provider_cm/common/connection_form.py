"""The Communications Mining connection type as the Airflow 3 UI shows it: one form field per setting.

Every setting :class:`~airflow_provider_cm.client.settings.ConnectionSettings` reads from a
connection's extras is a field here (``conn-fields``: a label, a description with its unit, and a
JSON Schema the UI picks its widget from), so nothing has to be typed into the raw Extra JSON.
The UI stores each field in the connection's ``extra`` under the field's bare name; a field the
user clears is stored as ``null`` (or left out), which the hook reads as the default.

How the Airflow 3.3 UI renders a schema: ``boolean`` is a switch, ``number``/``integer`` a number
input (``minimum`` is enforced), ``string`` a one-line input, ``object`` a JSON editor, and
``"format": "password"`` a masked input whose value the API returns redacted and the secrets
masker hides in logs. A schema with two non-null types (``["boolean", "string"]``) renders as a
free-form multi-line box, so every field has exactly one type, plus ``"null"`` where the field may
be left empty. Every field allows ``"null"``: the UI marks a field whose type does not as required
(a red ``*``), and no setting is; a field left empty means its default.

This module is data only and imports nothing, so ``get_provider_info()`` stays cheap.
"""

from __future__ import annotations

from typing import Any

CONNECTION_TYPE = "communications_mining"

# The hook's defaults, shown in the form (the tests check they equal ConnectionSettings' and RetryPolicy's).
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 120.0
DEFAULT_RETRY_MAX_ATTEMPTS = 5
DEFAULT_RETRY_MAX_ELAPSED = 300.0
DEFAULT_RETRY_INITIAL_WAIT = 1.0
DEFAULT_RETRY_MAX_WAIT = 30.0
DEFAULT_RETRY_RETRY_AFTER_CAP = 120.0


def _text(label: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": ["string", "null"], **schema}}


def _seconds(label: str, description: str, default: float, minimum: float) -> dict[str, Any]:
    schema = {"type": ["number", "null"], "minimum": minimum, "default": default}
    return {"label": label, "description": description, "schema": schema}


#: ``conn-fields``: extra key -> label, description and JSON Schema, in the order the form shows them.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "client_id": _text(
        "OAuth client ID",
        "Automation Cloud external application (confidential, Communications Mining API scope). "
        "Set it with the client secret instead of an API token.",
    ),
    "client_secret": _text(
        "OAuth client secret",
        "The external application's secret. Stored masked; never shown or logged.",
        format="password",
    ),
    "scope": _text(
        "OAuth scope",
        "Space-separated scopes to ask for, e.g. Reinfer.Api. Empty: the application's defaults.",
    ),
    "token_url": _text(
        "OAuth token URL",
        "The identity server's token endpoint. Empty: https://<host>/<organisation>/identity_/connect/token "
        "from the API endpoint.",
    ),
    "verify": {
        "label": "Verify TLS certificates",
        "description": "Check the server's TLS certificate (on by default). Turn off only for a test server.",
        # "null" beside the type keeps the UI from marking the switch required (it marks every field whose
        # type does not allow null); a cleared value reads as the default, on.
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "ca_bundle": _text(
        "CA bundle path",
        "Path on the workers and triggerer of a CA bundle file (PEM) or directory to verify the server "
        "with, e.g. a corporate root CA. Empty: the system's trusted CAs.",
    ),
    "connect_timeout": _seconds(
        "Connect timeout (seconds)",
        f"Seconds to wait for the TCP and TLS connection. Default {DEFAULT_CONNECT_TIMEOUT:g}.",
        DEFAULT_CONNECT_TIMEOUT,
        0.1,
    ),
    "timeout": _seconds(
        "Read timeout (seconds)",
        f"Seconds to wait for a response before the attempt fails (and is retried where safe). "
        f"Default {DEFAULT_READ_TIMEOUT:g}.",
        DEFAULT_READ_TIMEOUT,
        1,
    ),
    "proxies": {
        "label": "Proxies",
        "description": 'Proxy URL by scheme as JSON, e.g. {"https": "http://proxy:3128"}. Empty: none set here '
        "(the HTTP_PROXY/HTTPS_PROXY environment variables still apply, as requests and httpx read them).",
        "schema": {"type": ["object", "null"]},
    },
    "retry_max_attempts": {
        "label": "Retry: attempts per request",
        "description": "Attempts in all, the first included; 1 turns retries off. "
        f"Default {DEFAULT_RETRY_MAX_ATTEMPTS}.",
        "schema": {"type": ["integer", "null"], "minimum": 1, "default": DEFAULT_RETRY_MAX_ATTEMPTS},
    },
    "retry_max_elapsed": _seconds(
        "Retry: time limit per request (seconds)",
        f"Seconds after the first attempt past which no new attempt starts. Default {DEFAULT_RETRY_MAX_ELAPSED:g}.",
        DEFAULT_RETRY_MAX_ELAPSED,
        0,
    ),
    "retry_initial_wait": _seconds(
        "Retry: first wait (seconds)",
        f"Seconds before the first retry; doubles each retry, with jitter. Default {DEFAULT_RETRY_INITIAL_WAIT:g}.",
        DEFAULT_RETRY_INITIAL_WAIT,
        0,
    ),
    "retry_max_wait": _seconds(
        "Retry: longest wait (seconds)",
        f"Cap in seconds on one backoff wait. Default {DEFAULT_RETRY_MAX_WAIT:g}.",
        DEFAULT_RETRY_MAX_WAIT,
        0,
    ),
    "retry_retry_after_cap": _seconds(
        "Retry: longest Retry-After wait (seconds)",
        f"Cap in seconds on a wait the server asks for (HTTP 429/503 Retry-After). "
        f"Default {DEFAULT_RETRY_RETRY_AFTER_CAP:g}.",
        DEFAULT_RETRY_RETRY_AFTER_CAP,
        0,
    ),
}

#: ``ui-field-behaviour``: the standard fields the connection uses, relabelled, with placeholders.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "port"],
    "relabeling": {"host": "API endpoint", "password": "API token"},
    "placeholders": {
        "host": "https://cloud.uipath.com/<organisation>/<tenant>/reinfer_",
        "password": "API token from Administration > My Account (or use the OAuth client fields)",
    },
}


def connection_type() -> dict[str, Any]:
    """The ``connection-types`` entry of ``get_provider_info()``."""
    return {
        "hook-class-name": "airflow_provider_cm.hooks.communications_mining.CommunicationsMiningHook",
        "connection-type": CONNECTION_TYPE,
        "hook-name": "UiPath Communications Mining",
        "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
        "conn-fields": CONN_FIELDS,
    }
