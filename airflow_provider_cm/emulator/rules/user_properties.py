"""User properties: ``string:<Name>`` and ``number:<Name>`` keys, on comments and in stream filters.

On a comment, a ``string:`` key holds a string and a ``number:`` key a number; the official
client cannot read back any other key or value type. In a comment filter each key maps to
``{"one_of": [...], "not_one_of": [...], "domain_not_one_of": [...]}`` (values of the key's type,
1 to 128 of them) or, for numbers, ``{"minimum": n, "maximum": n}``.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_cm.api.limits import MAX_FILTER_VALUES
from airflow_provider_cm.emulator.errors import bad_request
from airflow_provider_cm.emulator.rules.checks import Check, array, custom, number, obj, string

PREFIXES = ("string:", "number:")


def _check_key(key: str, where: str) -> None:
    if not key.startswith(PREFIXES) or len(key.split(":", 1)[1]) == 0:
        raise bad_request(f"{where} key {key!r} must start with 'string:' or 'number:' and name the property")


def _check_properties(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise bad_request(f"{where} must be an object")
    for key, item in value.items():
        _check_key(key, where)
        if key.startswith("string:"):
            string()(item, f"{where}[{key!r}]")
        else:
            number()(item, f"{where}[{key!r}]")


def _by_prefix(string_schema: dict[str, Any], number_schema: dict[str, Any]) -> dict[str, Any]:
    """An object whose keys are ``string:<Name>`` or ``number:<Name>``, each with its own schema."""
    return {
        "type": "object",
        "patternProperties": {r"^string:[\s\S]": string_schema, r"^number:[\s\S]": number_schema},
        "additionalProperties": False,
    }


#: A comment's ``user_properties``.
USER_PROPERTIES: Check = custom(_check_properties, _by_prefix(string().schema, number().schema))


def _value_list(kind: str) -> Check:
    item = string(max_len=65536) if kind == "string" else number()
    return array(item, min_items=1, max_items=MAX_FILTER_VALUES)


def _rule_check(kind: str) -> Check:
    values = _value_list(kind)
    fields: dict[str, Check] = {"one_of": values, "not_one_of": values, "domain_not_one_of": values}
    if kind == "number":
        fields.update(minimum=number(), maximum=number())
    return obj(fields, closed=True)


_RULES = {"string": _rule_check("string"), "number": _rule_check("number")}


def _check_filter(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise bad_request(f"{where} must be an object")
    for key, rule in value.items():
        _check_key(key, where)
        _RULES[key.split(":", 1)[0]](rule, f"{where}[{key!r}]")


#: A comment filter's ``user_properties``.
USER_PROPERTIES_FILTER: Check = custom(_check_filter, _by_prefix(_RULES["string"].schema, _RULES["number"].schema))


def _rule_matches(rule: dict[str, Any], value: Any) -> bool:
    if "one_of" in rule and value not in rule["one_of"]:
        return False
    if "not_one_of" in rule and value in rule["not_one_of"]:
        return False
    if "minimum" in rule and (value is None or value < rule["minimum"]):
        return False
    return not ("maximum" in rule and (value is None or value > rule["maximum"]))


def properties_match(rules: dict[str, Any], properties: dict[str, Any]) -> bool:
    """Whether a comment's properties pass every rule of a (checked) filter."""
    return all(_rule_matches(rule, properties.get(key)) for key, rule in rules.items())
