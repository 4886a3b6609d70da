"""A Communications Mining connection's settings, resolved once and shared by both transports.

Everything the hook needs from an Airflow connection is read and checked here, so the
synchronous (``requests``) and asynchronous (``httpx``) adapters cannot drift apart: the API
endpoint, the time-outs, TLS verification normalised to ``True``, ``False`` or a CA bundle path,
the proxy map, the retry policy, the default headers, and the credentials (an API token, or OAuth
client credentials). A connection that cannot work (no host, neither a token nor client
credentials, a CA bundle that does not exist, ``verify`` off together with a CA bundle, a
malformed proxy map, a time-out or retry setting that is not a number in range) fails here,
before any request, with a message that says what to change.

The extras are the fields of the connection form
(:data:`airflow_provider_cm.common.connection_form.CONN_FIELDS`). An extra stored as ``null`` or as
an empty string (what the form stores for a field left empty) means the default. Connections
written before the form had a ``ca_bundle`` field, with the CA bundle path in ``verify`` and
numbers as text, still work.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from airflow_provider_cm import __version__
from airflow_provider_cm.client.auth import ClientCredentials, default_token_url
from airflow_provider_cm.client.flags import parse_flag
from airflow_provider_cm.client.retry import RetryPolicy
from airflow_provider_cm.exceptions import CommunicationsMiningConfigError

#: Seconds to wait for a TCP/TLS connection, and for a response, unless the connection sets them.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 120.0


@dataclass(frozen=True)
class ConnectionSettings:
    """What a hook needs from its connection, checked.

    :param conn_id: the Airflow connection id (for messages).
    :param endpoint: the API endpoint without a trailing slash or ``/api``.
    :param connect_timeout: seconds to wait for a TCP/TLS connection.
    :param read_timeout: seconds to wait for a response.
    :param verify: ``True``, ``False`` or the path of a CA bundle file or directory.
    :param proxies: proxy URL by scheme (``{"https": "http://proxy:3128"}``), as requests takes them.
    :param api_token: the static API token, or ``None`` with client credentials.
    :param credentials: OAuth client credentials, or ``None`` with an API token.
    :param retry_policy: when and how requests are retried.
    """

    conn_id: str
    endpoint: str
    connect_timeout: float
    read_timeout: float
    verify: bool | str
    proxies: Mapping[str, str]
    api_token: str | None
    credentials: ClientCredentials | None
    retry_policy: RetryPolicy
    headers: Mapping[str, str] = field(
        default_factory=lambda: {"Accept": "application/json", "User-Agent": f"airflow-provider-cm/{__version__}"}
    )

    @classmethod
    def from_connection(
        cls, conn: Any, *, timeout: float | None = None, retry_overrides: Mapping[str, Any] | None = None
    ) -> ConnectionSettings:
        """Resolve an Airflow connection.

        :param conn: an :class:`airflow.sdk.Connection` of type ``communications_mining``.
        :param timeout: read timeout in seconds, overriding the connection's ``timeout`` extra.
        :param retry_overrides: ``{"max_attempts": ..., "max_elapsed": ...}``, overriding the extras.
        :raises CommunicationsMiningConfigError: for a connection that cannot work, saying what to change.
        """
        extras = _extras(conn)
        try:
            endpoint = endpoint_from_connection(conn)
            policy = RetryPolicy.from_mapping(retry_extras(extras, conn.conn_id), **dict(retry_overrides or {}))
        except ValueError as exc:
            raise CommunicationsMiningConfigError(str(exc)) from None
        credentials = client_credentials_from(conn, endpoint)
        token = conn.password or None
        if credentials is None and not token:
            raise CommunicationsMiningConfigError(
                f"connection {conn.conn_id!r} has neither an API token (the password field) nor OAuth client "
                "credentials (the client_id and client_secret extras): set one of them"
            )
        return cls(
            conn_id=conn.conn_id,
            endpoint=endpoint,
            connect_timeout=_seconds(extras.get("connect_timeout"), DEFAULT_CONNECT_TIMEOUT, "connect_timeout", conn),
            read_timeout=_seconds(timeout or extras.get("timeout"), DEFAULT_READ_TIMEOUT, "timeout", conn),
            verify=resolve_verify(extras, conn.conn_id),
            proxies=normalise_proxies(extras.get("proxies"), conn.conn_id),
            api_token=None if credentials is not None else token,
            credentials=credentials,
            retry_policy=policy,
        )

    def secrets(self) -> list[str]:
        """The values to mask in logs: the API token or the client secret."""
        found = [self.api_token] if self.api_token else []
        if self.credentials is not None:
            found.append(self.credentials.client_secret)
        return found


def normalise_verify(value: Any, conn_id: str = "") -> bool | str:
    """The ``verify`` extra as ``True``, ``False`` or a CA bundle path.

    Accepts booleans, the strings ``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``)
    and the path of an existing CA bundle file or directory; ``None`` or ``""`` means ``True``.

    :raises CommunicationsMiningConfigError: for anything else, e.g. a path that does not exist.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    flag = parse_flag(value)
    if flag is not None:
        return flag
    if isinstance(value, str):
        text = value.strip()
        if os.path.exists(text):
            return text
        raise CommunicationsMiningConfigError(
            f"connection {conn_id!r}: verify={value!r} is neither true/false nor an existing CA bundle path"
        )
    raise CommunicationsMiningConfigError(
        f"connection {conn_id!r}: verify must be true, false or a CA bundle path, not {type(value).__name__}"
    )


def resolve_verify(extras: Mapping[str, Any], conn_id: str = "") -> bool | str:
    """TLS verification from the ``verify`` and ``ca_bundle`` extras: ``True``, ``False`` or a CA bundle path.

    ``verify`` (default true) turns verification on or off; ``ca_bundle``, the path of a CA
    bundle file or directory (``~`` expanded), verifies with it instead of the system's CAs. A CA
    bundle path in ``verify`` itself (how connections were written before ``ca_bundle``) still works.

    :raises CommunicationsMiningConfigError: for a ``ca_bundle`` that does not exist, ``verify``
        false together with a ``ca_bundle``, two different CA bundles, or a ``verify`` that is
        neither true/false nor an existing path.
    """
    verify = normalise_verify(extras.get("verify"), conn_id)
    bundle = extras.get("ca_bundle")
    if bundle is None:
        return verify
    if not isinstance(bundle, str):
        raise CommunicationsMiningConfigError(
            f"connection {conn_id!r}: ca_bundle must be the path of a CA bundle file or directory, "
            f"not {type(bundle).__name__}"
        )
    path = os.path.expanduser(bundle.strip())
    if not os.path.exists(path):
        raise CommunicationsMiningConfigError(
            f"connection {conn_id!r}: the CA bundle {bundle!r} (ca_bundle) does not exist on this machine; "
            "give the path of a PEM file or directory readable by the workers and the triggerer"
        )
    if verify is False:
        raise CommunicationsMiningConfigError(
            f"connection {conn_id!r}: verify is false but a CA bundle is set (ca_bundle={bundle!r}); "
            "turn verify on to verify with the CA bundle, or clear ca_bundle"
        )
    if isinstance(verify, str) and os.path.realpath(verify) != os.path.realpath(path):
        raise CommunicationsMiningConfigError(
            f"connection {conn_id!r}: two CA bundles are set, verify={verify!r} and ca_bundle={bundle!r}; "
            "keep the path in ca_bundle and set verify to true"
        )
    return path


def retry_extras(extras: Mapping[str, Any], conn_id: str = "") -> dict[str, Any]:
    """The retry extras (``retry_max_attempts``, ``retry_max_elapsed``, ``retry_initial_wait``,
    ``retry_max_wait``, ``retry_retry_after_cap``), checked, as numbers, for :meth:`RetryPolicy.from_mapping`.

    Text such as ``"3"`` is accepted; a missing or empty extra is left out (the policy's default).

    :raises CommunicationsMiningConfigError: for ``retry_max_attempts`` that is not a whole number
        of at least 1, or a time that is not a number of seconds of at least 0.
    """
    checked: dict[str, Any] = {}
    for f in fields(RetryPolicy):
        key = f"retry_{f.name}"
        value = extras.get(key)
        if value is None:
            continue
        number = _number(value)
        if f.name == "max_attempts":
            if number is None or number != int(number) or number < 1:
                raise CommunicationsMiningConfigError(
                    f"connection {conn_id!r}: {key} must be a whole number of attempts of at least 1, not {value!r}"
                )
            checked[key] = int(number)
        elif number is None or number < 0:
            raise CommunicationsMiningConfigError(
                f"connection {conn_id!r}: {key} must be a number of seconds of at least 0, not {value!r}"
            )
        else:
            checked[key] = number
    return checked


def normalise_proxies(value: Any, conn_id: str = "") -> dict[str, str]:
    """The ``proxies`` extra as ``{scheme: proxy URL}`` (a JSON string is decoded).

    Keys are as requests takes them: ``http``, ``https``, ``all`` or ``scheme://host``.

    :raises CommunicationsMiningConfigError: for a value that is not such a map.
    """
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise CommunicationsMiningConfigError(
                f'connection {conn_id!r}: proxies must be a JSON object such as {{"https": "http://proxy:3128"}}'
            ) from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise CommunicationsMiningConfigError(
            f'connection {conn_id!r}: proxies must map schemes to proxy URLs, e.g. {{"https": "http://proxy:3128"}}'
        )
    return dict(value)


def endpoint_from_connection(conn: Any) -> str:
    """The API endpoint of an Airflow connection: host with scheme and any path prefix, no trailing ``/api``.

    :raises ValueError: if the connection has no host.
    """
    host = (conn.host or "").strip()
    if not host:
        raise ValueError(f"connection {conn.conn_id!r} has no host (the API endpoint)")
    if "://" not in host:
        scheme = conn.schema if conn.schema in ("http", "https") else "https"
        host = f"{scheme}://{host}"
        if conn.port:
            base, _, rest = host.partition("://")[2].partition("/")
            host = f"{scheme}://{base}:{conn.port}" + (f"/{rest}" if rest else "")
    host = host.rstrip("/")
    if host.endswith("/api"):
        host = host[: -len("/api")]
    return host


def client_credentials_from(conn: Any, endpoint: str) -> ClientCredentials | None:
    """Client credentials from a connection's extras (``client_id``, ``client_secret``, ``token_url``,
    ``scope``), or ``None`` when it has no ``client_id``.

    :raises CommunicationsMiningConfigError: for a ``client_id`` without ``client_secret`` (or the reverse), or when
        no token URL is given and none can be derived from the endpoint.
    """
    extras = _extras(conn)
    client_id = extras.get("client_id")
    secret = extras.get("client_secret")
    if not client_id:
        if secret:
            raise CommunicationsMiningConfigError(
                f"connection {conn.conn_id!r} has a client_secret but no client_id: set both, or clear the secret"
            )
        return None
    if not secret:
        raise CommunicationsMiningConfigError(f"connection {conn.conn_id!r} has a client_id but no client_secret")
    try:
        token_url = str(extras.get("token_url") or default_token_url(endpoint)).strip()
    except ValueError as exc:
        raise CommunicationsMiningConfigError(f"connection {conn.conn_id!r}: {exc}") from None
    scope = extras.get("scope")
    return ClientCredentials(token_url, str(client_id).strip(), str(secret), str(scope).strip() if scope else None)


def _extras(conn: Any) -> dict[str, Any]:
    """The connection's extras without those stored empty (``null`` or blank text): those mean the default."""
    extras = conn.extra_dejson or {}
    return {key: value for key, value in extras.items() if value is not None and not _blank(value)}


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def _number(value: Any) -> float | None:
    """A finite number from a number or numeric text; ``None`` otherwise (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _seconds(value: Any, default: float, name: str, conn: Any) -> float:
    if value is None or _blank(value):
        return default
    seconds = _number(value)
    if seconds is None or not seconds > 0:
        raise CommunicationsMiningConfigError(
            f"connection {conn.conn_id!r}: {name} must be a positive number of seconds, not {value!r}"
        )
    return seconds
