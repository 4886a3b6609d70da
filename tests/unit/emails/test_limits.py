"""The one check of a raw-e-mail document, and the emulator refusing what it refuses (400 naming the field)."""

from __future__ import annotations

import pytest

from airflow_provider_cm.api.email_limits import (
    MAX_ATTACHMENTS,
    MAX_BODY_HTML,
    MAX_BODY_PLAIN,
    MAX_HEADERS_RAW,
    MAX_SYNC_DOCUMENTS,
)
from airflow_provider_cm.exceptions import CommunicationsMiningBadRequestError
from airflow_provider_cm.pipelines.emails import batch_problems, document_problems, parse_eml
from tests.emails_data import CLI_EML


def document(**raw_email):
    raw = {"headers": {"raw": "From: a@example.com\nSubject: hi"}, "body": {"plain": "hello"}, "attachments": []}
    raw.update(raw_email)
    return {"raw_email": raw, "user_properties": {}}


ATTACHMENT = {"name": "a.pdf", "size": 1, "content_type": "application/pdf"}

CASES = [
    (document(headers={"raw": "X" * (MAX_HEADERS_RAW + 1)}), "raw_email.headers.raw"),
    (document(body={"plain": "x" * (MAX_BODY_PLAIN + 1)}), "raw_email.body.plain"),
    (document(body={"html": "x" * (MAX_BODY_HTML + 1)}), "raw_email.body.html"),
    (document(body={"plain": "a", "html": "b"}), "raw_email.body"),
    (document(headers={}), "raw_email.headers"),
    (document(attachments=[ATTACHMENT] * (MAX_ATTACHMENTS + 1)), "raw_email.attachments"),
    (document(attachments=[{**ATTACHMENT, "size": -1}]), "raw_email.attachments[0].size"),
    (document(attachments=[{**ATTACHMENT, "name": "n" * 257}]), "raw_email.attachments[0].name"),
    ({"raw_email": document()["raw_email"], "user_properties": {"Channel": "x"}}, "user_properties['Channel']"),
    ({"raw_email": document()["raw_email"], "comment_id": ""}, "comment_id"),
    ({}, "raw_email"),
]


@pytest.mark.parametrize(("bad", "field"), CASES, ids=[field for _, field in CASES])
def test_each_limit_names_its_field(bad, field):
    assert [f for f, _ in document_problems(bad)] == [field]


def test_limits_at_the_edge_pass():
    assert document_problems(document(headers={"raw": "X" * MAX_HEADERS_RAW})) == []
    assert document_problems(document(attachments=[ATTACHMENT] * MAX_ATTACHMENTS)) == []
    assert document_problems(document(headers={"parsed": {"From": "a@example.com"}}, body={"html": "<b>x</b>"})) == []
    assert batch_problems([document()] * 3) == []
    assert batch_problems([{}] * (MAX_SYNC_DOCUMENTS + 1))[0][0] == "documents"
    assert batch_problems([document(), {}]) == [("documents[1].raw_email", "is required and must be an object")]


@pytest.mark.parametrize(
    ("bad", "field"), CASES[:2] + CASES[3:5] + CASES[6:], ids=lambda v: v if isinstance(v, str) else ""
)
def test_the_emulator_refuses_what_the_check_refuses_naming_the_field(hook, workspace, bad, field):
    with pytest.raises(CommunicationsMiningBadRequestError) as info:
        hook.sync_raw_emails(workspace.source, [parse_eml(CLI_EML.read_bytes()).document, bad])
    assert info.value.status_code == 400 and f"documents[1].{field}" in info.value.message
