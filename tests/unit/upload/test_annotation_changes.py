"""When a rerun may skip a comment's label write: only when the write would change nothing.

The write's rules (reference 3.5): a kind left out is unchanged, a kind given replaces what is
stored, an empty list removes it. Every doubt answers "write". The end-to-end behaviour (real
HTTP, counted writes) is in ``tests/unit/operators/test_upload_labels.py``.
"""

from __future__ import annotations

import pytest

from airflow_provider_cm.pipelines.comments.annotation_changes import merged, needs_write

SPAN = {"content_part": "body", "message_index": 0, "utf16_byte_start": 0, "utf16_byte_end": 8}
ENTITY = {"name": "date", "formatted_value": "tomorrow", "span": SPAN}
COMMENT = {"comment": {"id": "c1", "uid": "s.c1"}}


def labels(*names, group="default", kind="assigned", sentiment="positive"):
    return [{"group": group, kind: [{"name": n, "sentiment": sentiment} for n in names]}]


def stored(**kinds):
    return {**COMMENT, **kinds}


@pytest.mark.parametrize(
    ("wanted", "current"),
    [
        ({"labelling": labels("A", "B")}, stored(labelling=labels("B", "A"))),  # order of labels
        (
            {"labelling": [{"assigned": [{"name": "A"}]}]},
            stored(labelling=[{"group": "default", "assigned": [{"name": "A"}]}]),
        ),
        (
            {"labelling": labels("A > B")},
            stored(labelling=[{"group": "default", "assigned": [{"name": ["A", "B"], "sentiment": "positive"}]}]),
        ),
        (
            {"labelling": labels("A")},
            stored(labelling=[*labels("A"), {"group": "other"}]),
        ),  # an empty group is no group
        (
            {"labelling": labels("A")},
            stored(labelling=[{**labels("A")[0], "predicted": [{"name": ["Z"], "probability": 0.9}]}]),
        ),
        ({"labelling": []}, stored()),  # nothing to remove
        ({"labelling": [{"group": "default", "assigned": []}]}, stored()),
        ({"labelling": labels("A", kind="dismissed")}, stored(labelling=labels("A", kind="dismissed"))),
        ({"entities": {"assigned": [ENTITY]}}, stored(entities={"assigned": [ENTITY], "dismissed": []})),
        (
            {"entities": {"assigned": [ENTITY]}},
            stored(entities={"assigned": [{**ENTITY, "span": {**SPAN, "char_start": 0}}]}),
        ),
        (
            {"entities": {"assigned": [ENTITY]}},
            stored(entities={"assigned": [{"name": "date", "formatted_value": "tomorrow", "spans": [SPAN]}]}),
        ),
        ({"entities": {"dismissed": [ENTITY]}}, stored(entities={"dismissed": [ENTITY]})),
        ({"entities": {"assigned": [ENTITY]}}, stored(entities={"assigned": [ENTITY], "predicted": [ENTITY, ENTITY]})),
        (
            {"moon_forms": [{"group": "default", "assigned": []}]},
            stored(moon_forms=[{"assigned": [], "group": "default"}]),
        ),
        # a kind the record leaves out is left as it is, whatever the dataset holds
        ({"entities": {"assigned": [ENTITY]}}, stored(labelling=labels("Other"), entities={"assigned": [ENTITY]})),
        ({"labelling": labels("A")}, stored(labelling=labels("A"), entities={"assigned": [ENTITY]})),
    ],
)
def test_the_same_annotations_are_not_written_again(wanted, current):
    assert needs_write(wanted, current) is False


@pytest.mark.parametrize(
    ("wanted", "current"),
    [
        ({"labelling": labels("A")}, None),  # the read did not return the comment
        ({"labelling": labels("A")}, stored()),
        ({"labelling": labels("A")}, stored(labelling=labels("A", "B"))),
        ({"labelling": labels("A", "A")}, stored(labelling=labels("A"))),  # a multiset, not a set
        ({"labelling": labels("A")}, stored(labelling=labels("A", sentiment="negative"))),
        ({"labelling": [{"group": "default", "assigned": [{"name": "A"}]}]}, stored(labelling=labels("A"))),
        ({"labelling": labels("A")}, stored(labelling=labels("A", kind="dismissed"))),
        ({"labelling": labels("A")}, stored(labelling=[*labels("A"), *labels("B", group="other")])),  # may be removed
        ({"labelling": labels("A", group="g1")}, stored(labelling=labels("A", group="g2"))),
        ({"labelling": []}, stored(labelling=labels("A"))),  # an empty list removes
        (
            {"labelling": [{"group": "default", "assigned": [{"name": "A", "metadata": {"k": 1}}]}]},
            stored(labelling=[{"group": "default", "assigned": [{"name": "A"}]}]),
        ),
        (
            {"labelling": [{"group": "default", "assigned": [{"name": "A", "colour": "red"}]}]},
            stored(labelling=[{"group": "default", "assigned": [{"name": "A", "colour": "red"}]}]),
        ),
        ({"labelling": [{"group": "default"}, {"group": "default"}]}, stored()),  # one group twice
        ({"entities": {"assigned": [ENTITY]}}, stored()),
        ({"entities": {"assigned": []}}, stored(entities={"assigned": [ENTITY]})),
        (
            {"entities": {"assigned": [ENTITY]}},
            stored(entities={"assigned": [ENTITY], "dismissed": [ENTITY]}),
        ),  # dismissed may go
        ({"entities": {"assigned": [ENTITY]}}, stored(entities={"dismissed": [ENTITY]})),
        ({"entities": {"dismissed": [ENTITY]}}, stored(entities={"assigned": [ENTITY]})),
        ({"entities": {"assigned": [ENTITY]}}, stored(entities={"assigned": [{**ENTITY, "formatted_value": "today"}]})),
        (
            {"entities": {"assigned": [ENTITY]}},
            stored(entities={"assigned": [{**ENTITY, "span": {**SPAN, "utf16_byte_end": 9}}]}),
        ),
        (
            {"entities": {"assigned": [{**ENTITY, "kind": "x"}]}},
            stored(entities={"assigned": [{**ENTITY, "kind": "x"}]}),
        ),
        ({"moon_forms": [{"group": "default"}]}, stored()),
        ({"moon_forms": [{"group": "a"}, {"group": "b"}]}, stored(moon_forms=[{"group": "b"}, {"group": "a"}])),
        ({"labelling": labels("A"), "audio_path": "x"}, stored(labelling=labels("A"))),  # an unknown kind
        ({"labelling": labels("A")}, stored(labelling={"assigned": [{"name": "A"}]})),  # a shape it does not know
    ],
)
def test_any_difference_or_doubt_is_written(wanted, current):
    assert needs_write(wanted, current) is True


def test_records_of_one_comment_merge_as_writing_them_in_order_would():
    first = {"labelling": labels("A"), "entities": {"assigned": [ENTITY]}}
    second = {"labelling": labels("B")}
    assert merged([first, second]) == {"labelling": labels("B"), "entities": {"assigned": [ENTITY]}}
