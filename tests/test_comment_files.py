"""The comment-file reader on generated malformed input: every record is either valid or reported with
its line and field, never an unhandled exception from deep inside.

Examples are derandomized so CI sees the same ones each run; raise ``max_examples`` locally to search wider.
"""

from __future__ import annotations

import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_cm.operators.comment_files import CommentRecord, read_csv, read_jsonl

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
            assert isinstance(item.comment["id"], str) and item.comment["id"].strip()
            assert item.comment["timestamp"].endswith("Z")
            assert isinstance(item.comment["messages"], list) and item.comment["messages"]
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
