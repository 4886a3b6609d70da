"""The comment-file reader on generated malformed input: every record is either valid or reported with
its line and field, never an unhandled exception from deep inside.

Examples are derandomized so CI sees the same ones each run; raise ``max_examples`` locally to search wider.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_cm.pipelines.comments.comment_files import CommentRecord, read_csv, read_jsonl
from airflow_provider_cm.pipelines.comments.comment_validation import RecordError, TimestampRule, checked_label_name

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
messages = (
    st.lists(
        st.fixed_dictionaries(
            {"body": st.one_of(st.fixed_dictionaries({"text": st.text(max_size=30)}), json_values)},
            optional={"subject": json_values, "from": json_values, "to": json_values, "sent_at": json_values},
        ),
        max_size=3,
    )
    | json_values
)
labels = st.one_of(
    st.text(max_size=12),
    st.fixed_dictionaries({"name": st.one_of(st.text(max_size=12), st.lists(st.text(max_size=6), max_size=3))},
                          optional={"sentiment": st.sampled_from(["positive", "negative", "neutral", 1])}),
    json_values,
)  # fmt: skip
labelling = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={"assigned": st.lists(labels, max_size=3), "dismissed": json_values}),
    st.lists(
        st.fixed_dictionaries({"group": json_values}, optional={"assigned": st.lists(labels, max_size=2)}), max_size=2
    ),
    json_values,
)
comments = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=10), json_values),
        "timestamp": st.one_of(st.just("2026-10-01T00:00:00Z"), st.text(max_size=25), json_values),
        "messages": messages,
        "user_properties": st.one_of(
            st.dictionaries(st.sampled_from(["string:A", "number:B", "C", "string:"]), json_values, max_size=3),
            json_values,
        ),
    },
)
records = st.fixed_dictionaries({}, optional={"comment": comments | json_values, "labelling": labelling,
                                              "entities": json_values, "extra": json_values})  # fmt: skip


def check(items: list, lines: int) -> None:
    for item in items:
        if isinstance(item, CommentRecord):
            comment = msgspec.to_builtins(item.comment)
            assert isinstance(comment["id"], str) and comment["id"].strip()
            assert comment["timestamp"].endswith("Z")
            assert isinstance(comment["messages"], list) and comment["messages"]
        else:
            line, field, message = item
            assert 1 <= line <= lines and field and message


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records | json_values, min_size=1, max_size=5))
def test_generated_jsonl_records_are_valid_or_reported(objects):
    data = "\n".join(json.dumps(obj) for obj in objects).encode()
    check(list(read_jsonl(io.BytesIO(data))), len(objects))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_jsonl_reader(data):
    check(list(read_jsonl(io.BytesIO(data))), data.count(b"\n") + 1)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.text(max_size=12), min_size=0, max_size=5), max_size=5))
def test_generated_csv_rows_are_valid_or_reported(rows):
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "timestamp", "text", "label"])
    writer.writerows(rows)
    text = buffer.getvalue()
    columns = {"id": "id", "timestamp": "timestamp", "text": "text", "labels": "label"}
    # The csv module counts a bare carriage return as a line end too (an upper bound is enough here).
    check(list(read_csv(io.BytesIO(text.encode()), columns)), text.count("\n") + text.count("\r") + 1)


# -- what the reader accepts can be sent ----------------------------------------------------------

lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
awkward_values = st.one_of(
    st.floats(),  # includes inf and nan, written as the non-JSON words Infinity and NaN
    st.text(alphabet=st.one_of(st.characters(), lone_surrogates), max_size=6),
    st.integers(min_value=-(10**400), max_value=10**400),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.fixed_dictionaries(
        {"id": st.one_of(st.just("x"), awkward_values), "body": awkward_values, "prop": awkward_values,
         "meta": awkward_values}
    )
)  # fmt: skip
def test_every_accepted_record_is_strict_utf8_json(values):
    """Whatever a line holds, an accepted record encodes as strict JSON (no NaN/Infinity) in UTF-8."""
    record = {
        "comment": {
            "id": values["id"],
            "timestamp": "2026-10-01T00:00:00Z",
            "messages": [{"body": {"text": values["body"]}}],
            "user_properties": {"number:P": values["prop"]},
        },
        "labelling": [{"group": "default", "assigned": [{"name": "A", "metadata": {"m": values["meta"]}}]}],
    }
    line = json.dumps(record).encode("utf-8", "surrogatepass")
    [item] = list(read_jsonl(io.BytesIO(line)))
    if isinstance(item, CommentRecord):
        values = [msgspec.to_builtins(item.comment), item.labelling]
        json.dumps(values, allow_nan=False, ensure_ascii=False).encode("utf-8")
    else:
        assert item[0] == 1 and item[1] and item[2]


# -- timestamps: RFC 3339 and nothing else --------------------------------------------------------

moments = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc))
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(lambda m: timedelta(minutes=m))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(moments, offsets, st.sampled_from(["T", "t"]), st.booleans())
def test_every_rfc3339_form_is_read_as_the_same_instant(moment, offset, separator, z_for_utc):
    local = moment.astimezone(timezone(offset))
    text = local.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    if local.microsecond:
        text += f".{local.microsecond:06d}"
    if offset == timedelta(0) and z_for_utc:
        text += "Z"
    else:
        total = int(offset.total_seconds() // 60)
        text += f"{'-' if total < 0 else '+'}{abs(total) // 60:02d}:{abs(total) % 60:02d}"
    normalised = TimestampRule().normalise(text, "t")
    assert normalised.endswith("Z")
    assert datetime.fromisoformat(normalised.replace("Z", "+00:00")) == moment


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    moments,
    st.sampled_from([" ", "_", "", "T "]),
    st.sampled_from(["%Y-%m-%d{sep}%H:%M", "%Y%m%d{sep}%H%M%S", "%Y-%j{sep}%H:%M:%S", "%G-W%V-%u{sep}%H:%M:%S"]),
    st.sampled_from(["Z", "+0000", "+00", ""]),
)
def test_other_iso8601_forms_are_refused(moment, separator, pattern, zone):
    text = moment.strftime(pattern.format(sep=separator)) + zone
    with pytest.raises(RecordError):
        TimestampRule().normalise(text, "t")


# -- label names: " > " is the only level separator -----------------------------------------------

levels = st.text(alphabet=st.characters(blacklist_characters=">", blacklist_categories=["Cs"]), min_size=1,
                 max_size=10).map(str.strip).filter(bool)  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(levels, min_size=1, max_size=5))
def test_levels_joined_by_the_separator_are_a_label_name(parts):
    assert checked_label_name(" > ".join(parts), "name") == " > ".join(parts)
    assert checked_label_name(parts, "name") == " > ".join(parts)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(levels, min_size=2, max_size=4), st.sampled_from([">", " >", "> ", "  > ", " >  ", " >> "]))
def test_any_other_angle_bracket_is_refused_with_the_reason(parts, separator):
    with pytest.raises(RecordError) as info:
        checked_label_name(separator.join(parts), "name")
    assert "' > '" in info.value.message


zones = st.sampled_from([None, timezone.utc, ZoneInfo("Europe/Paris"), ZoneInfo("America/Adak"),
                         ZoneInfo("Pacific/Kiritimati")])  # fmt: skip


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})?\Z"
    ),
    zones,
)
def test_any_rfc3339_shaped_string_is_a_utc_time_or_a_record_error(text, zone):
    """Out-of-range fields, offsets that cross year 1 or 9999, local times a zone skips: never a crash."""
    try:
        normalised = TimestampRule(zone).normalise(text, "t")
    except RecordError as exc:
        assert exc.field == "t" and repr(text) in exc.message
    else:
        assert datetime.fromisoformat(normalised.replace("Z", "+00:00")).tzinfo is not None
