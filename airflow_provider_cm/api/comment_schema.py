"""The one schema of a comment, as the API defines it, for the client and the emulator alike.

The types follow the official CLI's (``api/src/resources/comment.rs``: ``NewComment``,
``Message``, ``MessageBody``, ``MessageSubject``, ``MessageSignature``, ``NewAnnotatedComment``;
``attachments.rs``: ``AttachmentMetadata``), the limits and ``text_format`` the API's Swagger,
as the reference's comment object section (3.4.1) sums them up. In particular ``text_markup``
and ``translated_from_markup`` of a body or a signature are any JSON (``Option<JsonValue>``).

The types and limits are msgspec structs, so a JSONL line is decoded and checked in one pass
(:data:`RECORD_DECODER`) and a value already decoded is checked with :func:`check_comment`; the
rules no type can say (a comment id a URL path can address, RFC 3339 timestamps, user-property
keys and values) are the functions beside them, applied by the same entry points. The upload's
validator (:mod:`airflow_provider_cm.pipelines.comments.comment_validation`) and the emulator's request checks
(:mod:`airflow_provider_cm.emulator.routes.comments`) both call them; :func:`comment_json_schema` is the
same rule as JSON Schema for the emulator's OpenAPI document.

What the schema does with a valid comment: fields it does not know are left out (the CLI's
serde types read and send the same way); an optional field sent as ``null`` stays ``null`` (the
API treats it as absent); timestamps are normalised to RFC 3339 in UTC (``...Z``), a timestamp
without an offset read in the zone of a :class:`TimestampRule` (UTC unless the caller says
otherwise); a ``string:`` user property whose value is empty or blank is dropped (as the CLI does).

Every refusal is a :class:`RecordError` naming the field as a dotted path from ``root``
(``comment.messages[0].body.text``) and saying what is wrong.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

MAX_MESSAGES = 2048
MAX_TEXT = 65536
MAX_ADDRESS = 512
MAX_RECIPIENTS = 2048
MAX_LANGUAGE = 8
MAX_ATTACHMENTS = 128
MAX_ATTACHMENT_FIELD = 256
TEXT_FORMATS = ("markdown", "plain")

#: The prefixes of user-property keys, each followed by the property's name.
PROPERTY_PREFIXES = ("string:", "number:")


class RecordError(ValueError):
    """One problem with one record: the field (a dotted path) and what is wrong."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(message)
        self.field = field_path
        self.message = message


# -- the types ------------------------------------------------------------------------------------

Text = Annotated[str, Meta(max_length=MAX_TEXT)]
Address = Annotated[str, Meta(min_length=1, max_length=MAX_ADDRESS)]
Addresses = Annotated[list[Address], Meta(max_length=MAX_RECIPIENTS)]
Language = Annotated[str, Meta(min_length=1, max_length=MAX_LANGUAGE)]
#: RFC 3339, checked and normalised by :class:`TimestampRule` (no type can say it).
Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
AttachmentField = Annotated[str, Meta(max_length=MAX_ATTACHMENT_FIELD)]
#: ``string:<Name>`` keys hold strings, ``number:<Name>`` keys finite numbers
#: (checked by :func:`validate_user_properties`).
UserProperties = Annotated[
    dict[str, Any],
    Meta(
        extra_json_schema={
            "patternProperties": {r"^string:[\s\S]": {"type": "string"}, r"^number:[\s\S]": {"type": "number"}},
            "additionalProperties": False,
        }
    ),
]


class MessageBody(Struct, omit_defaults=True):
    """A message's body (the CLI's ``MessageBody``); the signature has the same shape."""

    text: Text
    translated_from: Text | UnsetType | None = UNSET
    text_markup: Any | UnsetType = UNSET
    translated_from_markup: Any | UnsetType = UNSET


class MessageSubject(Struct, omit_defaults=True):
    """A message's subject (the CLI's ``MessageSubject``: no markup)."""

    text: Text
    translated_from: Text | UnsetType | None = UNSET


class Message(Struct, omit_defaults=True, rename={"from_": "from"}):
    """One message of a comment (the CLI's ``Message``)."""

    body: MessageBody
    language: Language | UnsetType | None = UNSET
    subject: MessageSubject | UnsetType | None = UNSET
    signature: MessageBody | UnsetType | None = UNSET
    from_: Address | UnsetType | None = UNSET
    to: Addresses | UnsetType | None = UNSET
    cc: Addresses | UnsetType | None = UNSET
    bcc: Addresses | UnsetType | None = UNSET
    sent_at: Timestamp | UnsetType | None = UNSET


Messages = Annotated[list[Message], Meta(min_length=1, max_length=MAX_MESSAGES)]


class AttachmentMetadata(Struct, omit_defaults=True):
    """An attachment's metadata (the CLI's ``AttachmentMetadata``); never its content."""

    name: AttachmentField
    size: Annotated[int, Meta(ge=0)]
    content_type: AttachmentField
    attachment_reference: str | UnsetType | None = UNSET
    content_hash: str | UnsetType | None = UNSET


class NewComment(Struct, omit_defaults=True):
    """A comment as a client sends it (the CLI's ``NewComment``, plus the Swagger's ``text_format``)."""

    id: Annotated[str, Meta(min_length=1)]
    timestamp: Timestamp
    messages: Messages
    thread_id: str | UnsetType | None = UNSET
    user_properties: UserProperties | UnsetType | None = UNSET
    attachments: Annotated[list[AttachmentMetadata], Meta(max_length=MAX_ATTACHMENTS)] | UnsetType | None = UNSET
    text_format: Literal["markdown", "plain"] | UnsetType | None = UNSET


class NewAnnotatedComment(Struct, omit_defaults=True, forbid_unknown_fields=True):
    """One record of the ``re create comments`` JSONL format (the CLI's ``NewAnnotatedComment``).

    ``labelling`` and ``entities`` are checked by the upload's validator; ``moon_forms`` and
    ``audio_path`` are read as the CLI reads them.
    """

    comment: NewComment
    labelling: Any | UnsetType = UNSET
    entities: Any | UnsetType = UNSET
    moon_forms: list[Any] | UnsetType | None = UNSET
    audio_path: str | UnsetType | None = UNSET


#: Decodes a JSONL line into a :class:`NewAnnotatedComment`, checking every type and limit.
RECORD_DECODER = msgspec.json.Decoder(NewAnnotatedComment)


# -- msgspec's refusals, said as the project says them -------------------------------------------

_ERROR = re.compile(r"(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.S)
_EXPECTED = re.compile(r"Expected `(?P<kind>[^`]+)`, got `(?P<got>[^`]+)`")
_LENGTH = re.compile(r"Expected `(?P<kind>[^`]+)` of length (?P<op>[<>]=) (?P<n>\d+)")
_MINIMUM = re.compile(r"Expected `[^`]+` >= (?P<n>-?\d+)")
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]+)`")
_ENUM = re.compile(r"Invalid enum value (?P<value>.+)")
_KINDS = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "int | float": "a number",
    "array": "a list",
    "object": "an object",
    "bool": "true or false",
}
_CHOICES = {"text_format": TEXT_FORMATS}


def _join(root: str, path: str) -> str:
    joined = f"{root}{path}" if path.startswith("[") else f"{root}.{path.lstrip('.')}" if path else root
    return joined.lstrip(".") or "(record)"


def _describe(kind: str) -> str:
    kinds = [k for k in kind.split(" | ") if k != "null"]
    return _KINDS.get(" | ".join(kinds)) or " or ".join(_KINDS.get(k, k) for k in kinds)


def record_error(exc: msgspec.ValidationError, root: str = "") -> RecordError:
    """A msgspec validation error as a :class:`RecordError` naming the field under ``root``."""
    match = _ERROR.fullmatch(str(exc))
    what, field = (match["what"], _join(root, match["path"] or "")) if match else (str(exc), root or "(record)")
    if found := _MISSING.fullmatch(what):
        return RecordError(_join(field if field != "(record)" else "", found["name"]), "is missing")
    if found := _UNKNOWN.fullmatch(what):
        return RecordError(found["name"], "unsupported field in this record")
    if found := _EXPECTED.fullmatch(what):
        return RecordError(field, f"must be {_describe(found['kind'])}")
    if found := _LENGTH.fullmatch(what):
        n = int(found["n"])
        if found["kind"] == "str":
            if found["op"] == "<=":
                return RecordError(field, f"must be a string of at most {n} characters (the API's limit)")
            return RecordError(field, "must not be empty" if n == 1 else f"must be at least {n} characters long")
        if found["op"] == "<=":
            return RecordError(field, f"has more than {n} items; the API takes at most {n}")
        return RecordError(field, "must be a non-empty list" if n == 1 else f"must hold at least {n} items")
    if found := _MINIMUM.fullmatch(what):
        return RecordError(field, f"must be {found['n']} or more")
    if found := _ENUM.fullmatch(what):
        choices = _CHOICES.get(field.rsplit(".", 1)[-1])
        allowed = " or ".join(map(repr, choices)) if choices else "one of the documented values"
        return RecordError(field, f"must be {allowed}, got {found['value']}")
    return RecordError(field, what[:1].lower() + what[1:])


_T = TypeVar("_T")


def convert(value: Any, kind: type[_T], root: str) -> _T:
    """``value`` (as JSON decodes it) checked against ``kind``'s types and limits.

    :raises RecordError: naming the first offending field under ``root``.
    """
    try:
        return msgspec.convert(value, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise record_error(exc, root) from None


# -- timestamps -----------------------------------------------------------------------------------

#: RFC 3339 date-time (section 5.6); the offset is optional here, see :class:`TimestampRule`.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))?",
    re.ASCII,
)


@dataclass
class TimestampRule:
    """How timestamps are read: RFC 3339 only, and the zone of those without an offset.

    :param zone: the zone a timestamp without an offset (``2026-10-01T12:00:00``) is read in;
        ``None`` refuses such timestamps.
    :param naive: how many timestamps were read in ``zone`` so far (for one log line).
    """

    zone: tzinfo | None = dt_timezone.utc
    naive: int = 0

    def normalise(self, value: Any, field_path: str) -> str:
        """Check an RFC 3339 date-time and return it in UTC as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.

        Fractions of a second beyond microseconds are cut.

        :raises RecordError: for anything else, e.g. ``2026-10-01 12:00:00Z`` (a space),
            ``20261001T120000Z`` (basic format), ``2026-10-01T12:00Z`` (no seconds) or
            ``2026-W40-4T12:00:00Z`` (week date).
        """
        if not isinstance(value, str):
            raise RecordError(field_path, "must be an RFC 3339 date-time string such as '2026-10-01T12:00:00Z'")
        match = _RFC3339.fullmatch(value)
        if match is None:
            raise RecordError(
                field_path,
                f"{value!r} is not an RFC 3339 date-time: write it as YYYY-MM-DDTHH:MM:SS with an optional "
                "fraction and a 'Z' or '+HH:MM' offset, e.g. '2026-10-01T12:00:00Z'",
            )
        if match.group(7) is None and match.group(8) == "Z" and value[10] == "T":
            # Already in the form returned (the common case): the date-time only needs to exist.
            try:
                datetime.fromisoformat(value[:-1])
                return value
            except ValueError:
                pass  # said below, as for any other form
        year, month, day, hour, minute, second, fraction = match.group(1, 2, 3, 4, 5, 6, 7)
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        try:
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
            if match.group(8):
                moment = moment.replace(tzinfo=dt_timezone.utc)
            elif match.group(9):
                moment = moment.replace(tzinfo=_offset(match[9], match[10], match[11], value, field_path))
            else:
                moment = self._in_zone(moment, value, field_path)
            utc = moment.astimezone(dt_timezone.utc)
        except RecordError:
            raise
        except (ValueError, OverflowError) as exc:  # day 31 of a 30-day month; beyond year 1 to 9999 in UTC
            raise RecordError(field_path, f"{value!r} is not a valid date-time: {exc}") from None
        return utc.replace(tzinfo=None).isoformat() + "Z"

    def _in_zone(self, moment: datetime, value: str, field_path: str) -> datetime:
        if self.zone is None:
            raise RecordError(field_path, f"{value!r} has no UTC offset: add 'Z' or '+HH:MM', or pass timezone")
        local = moment.replace(tzinfo=self.zone)
        utc = local.astimezone(dt_timezone.utc)
        if utc.astimezone(self.zone).replace(tzinfo=None) != moment:
            raise RecordError(field_path, f"{value!r} does not exist in {self.zone} (a daylight-saving gap)")
        if local.replace(fold=1).utcoffset() != local.utcoffset():
            raise RecordError(
                field_path, f"{value!r} happens twice in {self.zone} (clocks go back): add its UTC offset"
            )
        self.naive += 1
        return local


def _offset(sign: str, hours: str, minutes: str, value: str, field_path: str) -> tzinfo:
    if int(hours) > 23 or int(minutes) > 59:
        raise RecordError(field_path, f"{value!r} has an invalid UTC offset")
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return dt_timezone(-delta if sign == "-" else delta)


# -- the rules no type can say --------------------------------------------------------------------


def check_comment_id(value: Any, field_path: str = "comment.id") -> str:
    """A comment id the per-comment routes can address (``.../comments/<id>``, ``.../labellings/<uid>``).

    The API lets the client choose any string (reference 1.4); the hook percent-encodes it in a
    path, so ``/``, ``?``, ``#`` and spaces are fine. What no URL path can carry is refused:
    an empty or blank id, ``.`` and ``..`` (removed by path normalisation) and control characters.

    :raises RecordError: naming ``field_path``.
    """
    if value is None:
        raise RecordError(field_path, "is missing")
    if not isinstance(value, str) or not value.strip():
        raise RecordError(field_path, "must be a non-empty string")
    if value in (".", ".."):
        raise RecordError(field_path, f"{value!r} cannot be used: a URL path cannot address it")
    control = None if value.isprintable() else next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise RecordError(field_path, f"holds the control character {control!r}: a URL path cannot address the comment")
    return value


def is_finite_number(value: Any) -> bool:
    """A JSON number the API can read: an int or a finite float, not a bool."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def property_kind(key: Any) -> str | None:
    """``"string"`` or ``"number"`` for a well-formed user-property key, else ``None``."""
    if isinstance(key, str) and len(key) > 7:  # both prefixes are 7 characters long
        if key.startswith("string:"):
            return "string"
        if key.startswith("number:"):
            return "number"
    return None


def validate_user_properties(properties: Any, field_path: str = "comment.user_properties") -> dict[str, Any]:
    """Check ``string:``/``number:`` keyed properties; blank string values are dropped.

    :raises RecordError: for a key without its prefix, or a value of the wrong type (a number
        must be finite).
    """
    if not isinstance(properties, dict):
        raise RecordError(field_path, "must be an object")
    for key, value in properties.items():  # the common case at once: every property valid, none blank
        if type(value) is str:
            if not (key[:7] == "string:" and len(key) > 7 and value and not value.isspace()):
                break
        elif not (key[:7] == "number:" and len(key) > 7 and is_finite_number(value)):
            break
    else:
        return properties
    out: dict[str, Any] = {}
    for key, value in properties.items():
        kind = property_kind(key)
        if kind == "string" and isinstance(value, str):
            if value and not value.isspace():
                out[key] = value
        elif kind == "number" and is_finite_number(value):
            out[key] = value
        else:
            where = f"{field_path}[{key!r}]"
            if kind is None:
                raise RecordError(where, "key must start with 'string:' or 'number:' followed by a name")
            if kind == "string":
                raise RecordError(where, "must be a string (key starts with 'string:')")
            raise RecordError(where, "must be a finite number (key starts with 'number:')")
    return out


def check_messages_rules(messages: list[Message], rule: TimestampRule, root: str) -> None:
    """The rules of messages no type can say: each ``sent_at`` is RFC 3339 (normalised in place)."""
    for index, message in enumerate(messages):
        sent_at = message.sent_at
        if sent_at is not UNSET and sent_at is not None:
            message.sent_at = rule.normalise(sent_at, f"{root}[{index}].sent_at")


def check_comment_rules(comment: NewComment, rule: TimestampRule, root: str = "comment") -> NewComment:
    """Apply the rules no type can say to a comment whose types were checked; normalise in place.

    :raises RecordError: naming the first offending field under ``root``.
    """
    cid = comment.id
    if not cid.isprintable() or cid.isspace() or cid in (".", ".."):
        check_comment_id(cid, f"{root}.id")
    timestamp = comment.timestamp
    normalised = rule.normalise(timestamp, f"{root}.timestamp")
    if normalised is not timestamp:
        comment.timestamp = normalised
    for message in comment.messages:
        if message.sent_at is not UNSET and message.sent_at is not None:
            check_messages_rules(comment.messages, rule, f"{root}.messages")
            break
    properties = comment.user_properties
    if properties is not UNSET and properties is not None:
        comment.user_properties = validate_user_properties(properties, f"{root}.user_properties")
    return comment


def check_comment(value: Any, timestamps: TimestampRule | None = None, root: str = "comment") -> NewComment:
    """A decoded comment checked against the whole schema, normalised.

    :param value: the comment, as JSON decodes it.
    :param timestamps: how to read timestamps (default: RFC 3339, no offset meaning UTC).
    :param root: the field path of the comment in error messages.
    :raises RecordError: naming the first offending field.
    """
    return check_comment_rules(convert(value, NewComment, root), timestamps or TimestampRule(), root)


def check_messages(value: Any, timestamps: TimestampRule | None = None, root: str = "messages") -> list[Message]:
    """A decoded list of messages checked against the schema (a predicted document's messages).

    :raises RecordError: naming the first offending field.
    """
    messages = convert(value, Messages, root)  # type: ignore[arg-type]
    check_messages_rules(messages, timestamps or TimestampRule(), root)
    return messages


# -- as JSON Schema -------------------------------------------------------------------------------


def _inline(schema: Any, components: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return _inline(components[ref.rsplit("/", 1)[-1]], components)
        return {key: _inline(value, components) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inline(value, components) for value in schema]
    return schema


def json_schema(kind: Any) -> dict[str, Any]:
    """``kind``'s types and limits as one self-contained JSON Schema (draft 2020-12)."""
    (schema,), components = msgspec.json.schema_components([kind], ref_template="#/$defs/{name}")
    inlined: dict[str, Any] = _inline(schema, components)
    return inlined


def comment_json_schema() -> dict[str, Any]:
    """A comment's types and limits as JSON Schema (the emulator's OpenAPI document publishes it)."""
    return json_schema(NewComment)


def messages_json_schema() -> dict[str, Any]:
    """A comment's ``messages`` as JSON Schema."""
    return json_schema(Messages)
