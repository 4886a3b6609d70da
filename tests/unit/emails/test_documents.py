"""E-mails -> raw-e-mail documents: real messages (the CLI's samples, CPython's email test data), ids, bad input."""

from __future__ import annotations

import mailbox
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from airflow_provider_cm.api.email_limits import MAX_BODY_PLAIN
from airflow_provider_cm.pipelines.emails import (
    EmailError,
    EmailItem,
    EmailProblem,
    comment_id,
    document_problems,
    email_files,
    iter_emails,
    parse_eml,
    parse_msg,
)
from airflow_provider_cm.pipelines.emails.documents import normalise_message_id
from tests.emails_data import CLI_EML, CLI_MSG, CLI_MSG_ANSI, CLI_SAMPLE_ID, NOT_EMAILS, copy_as_eml, cpython_messages

CLI_ATTACHMENTS = [
    {"name": "hello.txt", "size": 12, "content_type": "text/plain"},
    {"name": "world.pdf", "size": 7302, "content_type": "application/pdf"},
]


def stdlib(data: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(data)


def test_cli_sample_eml_becomes_the_document_the_api_takes():
    data = CLI_EML.read_bytes()
    email = parse_eml(data, {"string:Channel": "email"})
    raw = email.document["raw_email"]
    assert email.comment_id == CLI_SAMPLE_ID == email.document["comment_id"]
    assert email.document["user_properties"] == {"string:Channel": "email"}
    assert raw["headers"]["raw"].splitlines()[:2] == [
        "From: Joe Prosser <joe.prosser@uipath.com>",
        "To: Andra Buica <andra.buica@uipath.com>",
    ]  # as in the file, CRLF line endings and all
    assert "Subject: Re: Testing the CLI!!" in raw["headers"]["raw"]
    assert "content-type" not in raw["headers"]["raw"].lower()  # the body is sent decoded
    expected_body = stdlib(data).get_body(("plain",)).get_content()
    assert raw["body"] == {"plain": expected_body} and "attachments work to \u2705" in expected_body
    assert raw["attachments"] == CLI_ATTACHMENTS  # metadata only, never content
    assert document_problems(email.document) == [] and not email.truncated and email.notes == []


@pytest.mark.parametrize("sample", [CLI_MSG, CLI_MSG_ANSI], ids=["unicode", "ansi"])
def test_the_same_email_as_outlook_msg_gets_the_same_id(sample):
    email = parse_msg(sample.read_bytes())
    raw = email.document["raw_email"]
    assert email.comment_id == CLI_SAMPLE_ID
    assert raw["attachments"] == CLI_ATTACHMENTS
    assert raw["body"]["plain"].startswith("Hey, \r\n\r\nWe should check that attachments work to ")
    assert "Subject: Re: Testing the CLI!!" in raw["headers"]["raw"]
    assert "content-type:" not in raw["headers"]["raw"].lower()
    assert document_problems(email.document) == []


def test_every_cpython_test_message_gives_a_valid_document_or_says_why_not():
    parsed = refused = 0
    for path in cpython_messages():
        data = path.read_bytes()
        if path.name in NOT_EMAILS:
            with pytest.raises(EmailError, match="no header"):
                parse_eml(data)
            refused += 1
            continue
        email = parse_eml(data)
        assert document_problems(email.document) == [], path.name
        message = stdlib(data)
        body = email.document["raw_email"]["body"]
        part = message.get_body(("plain", "html")) if message.is_multipart() else message
        if part is not None and part.get_content_maintype() == "text" and "decoded leniently" not in str(email.notes):
            assert next(iter(body.values())) == part.get_content(), path.name
        parsed += 1
    assert parsed >= 40 and refused == len(NOT_EMAILS)


def test_message_id_is_normalised_and_missing_one_hashes_the_normalised_bytes():
    assert normalise_message_id("\n\t<AbC.1@host.example>  ") == "AbC.1@host.example"
    assert normalise_message_id("<a@b> (comment)") == "a@b"
    assert comment_id("<x@y>", b"anything") == "x@y"
    lf = b"From: a@example.com\nSubject: hi\n\nbody\n"
    crlf = lf.replace(b"\n", b"\r\n")
    from_line = b"From a@example.com Sat Jan  3 01:05:34 1996\n" + lf
    assert comment_id(None, lf) == comment_id(None, crlf) == comment_id(None, from_line)
    assert comment_id(None, lf).startswith("sha256-") and comment_id(None, lf) != comment_id(None, lf + b"more")
    # A Message-ID no URL path can address is hashed, still stable and apart from the byte hash.
    assert comment_id("<..>", lf).startswith("msgid-sha256-") and comment_id("<..>", b"other") == comment_id("<..>", lf)
    assert comment_id("<a\x01b@c>", lf).startswith("msgid-sha256-")


def test_the_same_messages_from_an_mbox_get_the_same_ids_and_documents(tmp_path):
    messages = [p for p in cpython_messages() if p.name not in NOT_EMAILS] + [CLI_EML]
    box = mailbox.mbox(tmp_path / "all.mbox")
    for path in messages:
        box.add(path.read_bytes())
    box.close()
    from_mbox = list(iter_emails([tmp_path / "all.mbox"]))
    assert all(isinstance(item, EmailItem) for item in from_mbox)
    assert [item.index for item in from_mbox] == list(range(len(messages)))
    for path, item in zip(messages, from_mbox, strict=True):
        alone = parse_eml(path.read_bytes())
        assert item.email.comment_id == alone.comment_id, path.name
        assert item.email.document["raw_email"]["attachments"] == alone.document["raw_email"]["attachments"]


def test_a_plain_body_over_the_limit_is_truncated_and_counted():
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["Subject"] = "long"
    message.set_content("x" * (MAX_BODY_PLAIN + 5000))
    email = parse_eml(message.as_bytes())
    assert email.truncated and len(email.document["raw_email"]["body"]["plain"]) == MAX_BODY_PLAIN
    assert document_problems(email.document) == []


def test_bad_input_is_read_leniently():
    latin = (
        b"From: =?iso-8859-1?q?Andr=E9?= <andre@example.com>\nSubject: =?utf-8?b?w6l0w6k=?=\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\n\ncaf\xe9\n"
    )
    email = parse_eml(latin)
    assert email.document["raw_email"]["body"]["plain"].startswith("caf")
    assert any("decoded leniently" in note for note in email.notes)
    assert "no Date header" in email.notes and "no Message-ID header" in email.notes
    assert "=?utf-8?b?w6l0w6k=?=" in email.document["raw_email"]["headers"]["raw"]  # raw, as in the file

    outer = EmailMessage()
    outer["From"] = "a@example.com"
    outer["Subject"] = "forwarding"
    outer.set_content("see attached")
    inner = EmailMessage()
    inner["Subject"] = "the original"
    inner.set_content("inside")
    outer.add_attachment(inner)
    outer.add_attachment(b"\0" * (5 * 1024 * 1024), maintype="application", subtype="octet-stream", filename="big.bin")
    nested = parse_eml(outer.as_bytes())
    names = [(a["name"], a["content_type"]) for a in nested.document["raw_email"]["attachments"]]
    assert names == [("the original.eml", "message/rfc822"), ("big.bin", "application/octet-stream")]
    assert nested.document["raw_email"]["attachments"][1]["size"] == 5 * 1024 * 1024
    assert nested.document["raw_email"]["body"] == {"plain": "see attached\n"}
    assert len(str(nested.document)) < 10_000  # never the attachments' content

    for not_email in (b"", b"  \n\n", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", b"just a line of text\n"):
        with pytest.raises(EmailError):
            parse_eml(not_email)
    with pytest.raises(EmailError, match=r"not an Outlook \.msg"):
        parse_msg(CLI_EML.read_bytes())


def test_a_folder_is_read_recursively_in_path_order_and_nothing_is_skipped_silently(tmp_path):
    cpython = [p for p in cpython_messages() if p.name in ("msg_01.txt", "msg_02.txt", "msg_19.txt")]
    copy_as_eml(cpython, tmp_path / "in" / "b")
    (tmp_path / "in" / "a.eml").write_bytes(CLI_EML.read_bytes())
    (tmp_path / "in" / "c.msg").write_bytes(CLI_MSG.read_bytes())
    (tmp_path / "in" / "empty.eml").write_bytes(b"")
    (tmp_path / "in" / "empty.mbox").write_bytes(b"")
    (tmp_path / "in" / "notes.txt").write_text("not mail")
    (tmp_path / "in" / "plain.mbox").write_text("no From_ line here\n")
    files = email_files(tmp_path / "in")
    assert [f.relative_to(tmp_path / "in").as_posix() for f in files] == [
        "a.eml", "b/msg_01.eml", "b/msg_02.eml", "b/msg_19.eml", "c.msg", "empty.eml", "empty.mbox", "notes.txt",
        "plain.mbox",
    ]  # fmt: skip
    items = list(iter_emails(files, shown=lambda p: p.name))
    problems = [(i.file, i.index, i.reason.split(":")[0]) for i in items if isinstance(i, EmailProblem)]
    assert problems == [
        ("msg_19.eml", 0, "not an e-mail"),
        ("empty.eml", 0, "empty"),
        ("empty.mbox", None, "empty"),
        ("notes.txt", None, "not an e-mail file"),
        ("plain.mbox", None, "no messages"),
    ]
    ids = [i.email.comment_id for i in items if isinstance(i, EmailItem)]
    assert ids[0] == ids[-1] == CLI_SAMPLE_ID and len(ids) == 4
    with pytest.raises(FileNotFoundError):
        email_files(tmp_path / "missing")
