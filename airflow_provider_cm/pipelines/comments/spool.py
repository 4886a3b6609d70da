"""The upload's spool: each validated record as one line, the comment already encoded as JSON.

The whole input is validated into the spool before anything is sent, so the upload that follows
reads each record back from here, and the same bytes go to the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from airflow_provider_cm.pipelines.comments.annotation_changes import merged
from airflow_provider_cm.pipelines.comments.comment_files import CommentRecord

JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _encoder() -> Callable[[Any], str]:
    """``JSON_ENCODER.encode``, with the C encoder built once rather than for every call when there is one.

    ``JSONEncoder.encode`` builds its encoder on each call, a third of the cost of encoding a
    short comment. The one built here has the same settings (compact, UTF-8 text, no NaN or
    infinity); it skips the circular-reference check, which values read from JSON or CSV cannot need.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return JSON_ENCODER.encode
    encode = make(None, JSON_ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)

    def encode_once(value: Any) -> str:
        return "".join(encode(value, 0))

    return encode_once


encode_json_text = _encoder()
_encode_comment = msgspec.json.Encoder().encode


@dataclass
class SpooledRecord:
    """A validated record as the upload sends it: the comment already JSON-encoded.

    Spool line: ``<line>\t<id>\t<annotations as JSON, or empty>\t<comment as JSON>``; the id is
    JSON-quoted when it holds a tab, newline, backslash or leading quote. JSON text holds no raw
    tab or newline, so the fields split cleanly.
    """

    line: int
    id: str
    comment_json: bytes
    annotations_json: bytes

    @property
    def payload(self) -> bytes:
        """The comment as ``sync`` takes it (what the batch-sync loop sends)."""
        return self.comment_json

    @property
    def annotations(self) -> dict[str, Any] | None:
        """Labels, entities and forms to write, or ``None`` (decoded only when needed)."""
        return json.loads(self.annotations_json) if self.annotations_json else None

    @staticmethod
    def encode(record: CommentRecord) -> bytes:
        annotations = ""
        if record.has_annotations:
            values: dict[str, Any] = {}
            if record.labelling is not None and not record.moon_forms:
                values["labelling"] = record.labelling
            if record.entities is not None:
                values["entities"] = record.entities
            if record.moon_forms is not None:
                values["moon_forms"] = record.moon_forms
            annotations = encode_json_text(values)
        cid = record.id
        if not cid.isprintable() or "\\" in cid or cid.startswith('"'):
            cid = encode_json_text(cid)  # JSON-quoted only where it must be, to keep tabs and newlines out
        # msgspec writes the same compact UTF-8 JSON as the standard library, several times faster;
        # the schema has refused every number JSON cannot carry.
        return f"{record.line}\t{cid}\t{annotations}\t".encode() + _encode_comment(record.comment) + b"\n"

    @classmethod
    def decode(cls, raw: bytes) -> SpooledRecord:
        line, cid, annotations, comment = raw[:-1].split(b"\t", 3)  # every spool line ends with one newline
        text_id = json.loads(cid) if cid.startswith(b'"') else cid.decode("utf-8")
        return cls(int(line), text_id, comment, annotations)

    def as_input(self) -> dict[str, Any]:
        """The record in the ``re create comments`` JSONL form, for the dead-letter file."""
        return {"comment": json.loads(self.comment_json), **(self.annotations or {})}


def one_write_per_comment(records: list[SpooledRecord]) -> list[SpooledRecord]:
    """The records, those of one id merged into the last (in file order, each kind from the last
    record carrying it: what writing them one after the other would leave)."""
    by_id: dict[str, list[SpooledRecord]] = {}
    for record in records:
        by_id.setdefault(record.id, []).append(record)
    if len(by_id) == len(records):
        return records
    out = []
    for same in by_id.values():
        last = same[-1]
        if len(same) > 1:
            body = merged([r.annotations or {} for r in same])
            last = SpooledRecord(last.line, last.id, last.comment_json, JSON_ENCODER.encode(body).encode("utf-8"))
        out.append(last)
    return out
