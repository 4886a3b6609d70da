"""Type checks for request bodies: small declarative schemas and the 400 each violation gets.

A schema is a :class:`Check`: called as ``check(value, where)`` it returns nothing for a valid
value and raises :class:`~airflow_provider_cm.emulator.errors.ApiError` (400) naming the field
otherwise, and its ``schema`` is the same rule as JSON Schema, which the emulator's OpenAPI
document publishes. The builders below compose both at once, so a rule is written once; :func:`obj`
treats an optional field sent as ``null`` as absent (the official client leaves such fields out,
other clients send ``null``), and its JSON Schema says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airflow_provider_cm.emulator.errors import ApiError, bad_request
from airflow_provider_cm.emulator.wire import parse_time


class Check:
    """A rule for one value: callable as ``check(value, where)``, described by ``schema``."""

    __slots__ = ("_check", "schema")

    def __init__(self, check: Callable[[Any, str], None], schema: dict[str, Any]) -> None:
        self._check = check
        #: The rule as JSON Schema (draft 2020-12, as OpenAPI 3.1 uses it).
        self.schema = schema

    def __call__(self, value: Any, where: str) -> None:
        """Raise a 400 naming ``where`` unless ``value`` passes the rule."""
        self._check(value, where)


def custom(check: Callable[[Any, str], None], schema: dict[str, Any]) -> Check:
    """A hand-written rule and the JSON Schema that describes it."""
    return Check(check, schema)


def _without_none(**schema: Any) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if value is not None}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_length(value: str, where: str, min_len: int, max_len: int | None) -> None:
    if len(value) < min_len:
        raise bad_request(f"{where} must have at least {min_len} character(s)")
    if max_len is not None and len(value) > max_len:
        raise bad_request(f"{where} is longer than {max_len} characters")


def string(
    *, min_len: int = 0, max_len: int | None = None, choices: Iterable[str] | None = None, pattern: str | None = None
) -> Check:
    """A string, optionally bounded in length, one of ``choices`` or matching ``pattern``."""
    allowed = tuple(choices) if choices is not None else None
    regex = re.compile(pattern) if pattern else None

    def check(value: Any, where: str) -> None:
        if not isinstance(value, str):
            raise bad_request(f"{where} must be a string")
        _check_length(value, where, min_len, max_len)
        if allowed is not None and value not in allowed:
            raise bad_request(f"{where} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        if regex is not None and not regex.fullmatch(value):
            raise bad_request(f"{where} must match {regex.pattern}")

    return Check(
        check,
        _without_none(
            type="string",
            minLength=min_len or None,
            maxLength=max_len,
            enum=list(allowed) if allowed is not None else None,
            pattern=f"^(?:{pattern})$" if pattern else None,
        ),
    )


def _check_range(value: float, where: str, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise bad_request(f"{where} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise bad_request(f"{where} must be at most {maximum}")


def integer(*, minimum: int | None = None, maximum: int | None = None) -> Check:
    """An integer (not a boolean), optionally within ``[minimum, maximum]``."""

    def check(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"{where} must be an integer")
        _check_range(value, where, minimum, maximum)

    return Check(check, _without_none(type="integer", minimum=minimum, maximum=maximum))


def number(*, minimum: float | None = None, maximum: float | None = None) -> Check:
    """A number (not a boolean), optionally within ``[minimum, maximum]``."""

    def check(value: Any, where: str) -> None:
        if not _is_number(value) or value != value:
            raise bad_request(f"{where} must be a number")
        _check_range(value, where, minimum, maximum)

    return Check(check, _without_none(type="number", minimum=minimum, maximum=maximum))


def boolean() -> Check:
    """``true`` or ``false``."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, bool):
            raise bad_request(f"{where} must be true or false")

    return Check(check, {"type": "boolean"})


def timestamp() -> Check:
    """An ISO-8601 time."""

    def check(value: Any, where: str) -> None:
        parse_time(value, where)

    return Check(check, {"type": "string", "format": "date-time"})


def anything() -> Check:
    """Any JSON value."""

    def check(value: Any, where: str) -> None:
        return None

    return Check(check, {})


def array(item: Check, *, min_items: int = 0, max_items: int | None = None) -> Check:
    """A list whose every item passes ``item``, with ``min_items`` to ``max_items`` items."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise bad_request(f"{where} must be a list")
        if len(value) < min_items:
            raise bad_request(f"{where} must hold at least {min_items} item(s)")
        if max_items is not None and len(value) > max_items:
            raise bad_request(f"{where} must hold at most {max_items} items, got {len(value)}")
        for index, element in enumerate(value):
            item(element, f"{where}[{index}]")

    return Check(check, _without_none(type="array", items=item.schema, minItems=min_items or None, maxItems=max_items))


def mapping(value_check: Check, *, key_check: Check | None = None) -> Check:
    """An object with any keys (each passing ``key_check``) whose values pass ``value_check``."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise bad_request(f"{where} must be an object")
        for key, element in value.items():
            if key_check is not None:
                key_check(key, f"{where} key {key!r}")
            value_check(element, f"{where}[{key!r}]")

    schema: dict[str, Any] = {"type": "object", "additionalProperties": value_check.schema}
    if key_check is not None:
        schema["propertyNames"] = key_check.schema
    return Check(check, schema)


def obj(fields: Mapping[str, Check], *, required: Iterable[str] = (), closed: bool = False) -> Check:
    """An object with known ``fields``; ``required`` ones must be present and not null.

    :param closed: refuse fields not in ``fields`` (the API's ``additionalProperties: false``).
    """
    needed = tuple(required)

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise bad_request(f"{where} must be an object")
        if closed:
            unknown = sorted(set(value) - set(fields))
            if unknown:
                raise bad_request(f"{where}: unknown field(s) {', '.join(unknown)}")
        for name in needed:
            if value.get(name) is None:
                raise bad_request(f"{where}.{name} is required")
        for name, field_check in fields.items():
            if value.get(name) is not None:
                field_check(value[name], f"{where}.{name}")

    properties = {
        name: field.schema if name in needed else {"anyOf": [field.schema, {"type": "null"}]}
        for name, field in fields.items()
    }
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if needed:
        schema["required"] = list(needed)
    if closed:
        schema["additionalProperties"] = False
    return Check(check, schema)


def either(*checks: Check, describe: str) -> Check:
    """A value passing at least one of ``checks``; ``describe`` says what is expected."""

    def check(value: Any, where: str) -> None:
        for candidate in checks:
            try:
                candidate(value, where)
                return
            except ApiError:
                continue
        raise bad_request(f"{where} must be {describe}")

    return Check(check, {"anyOf": [candidate.schema for candidate in checks]})


def body_field(body: dict[str, Any], name: str, schema: Check) -> Any:
    """``body[name]``, required and checked against ``schema``."""
    value = body.get(name)
    if value is None:
        raise bad_request(f"body must be {{'{name}': ...}}")
    schema(value, name)
    return value
