"""The e-mail upload operator against the emulator's application: real e-mails in, the right comments stored."""

from __future__ import annotations

import json
import mailbox
from email import policy
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm.emulator.routes.raw_emails import html_text
from airflow_provider_cm.exceptions import CommunicationsMiningRejectedEmailsError
from airflow_provider_cm.operators.emails import CommunicationsMiningUploadEmailsOperator
from tests.conftest import read_jsonl
from tests.emails_data import CLI_EML, CLI_MSG, CLI_SAMPLE_ID, NOT_EMAILS, copy_as_eml, cpython_messages

ROUTE = "POST /api/v1/sources/{project}/{name}/sync-raw-emails"


def upload(workspace, path, **kwargs) -> CommunicationsMiningUploadEmailsOperator:
    return CommunicationsMiningUploadEmailsOperator(
        task_id="upload_emails", source=workspace.source, input_path=str(path), **kwargs
    )


def real_folder(tmp_path: Path) -> tuple[Path, list[Path]]:
    """CPython's e-mails (those that are e-mails) and the CLI's sample, as a gateway would drop them."""
    folder = tmp_path / "mail"
    messages = copy_as_eml([p for p in cpython_messages() if p.name not in NOT_EMAILS], folder / "cpython")
    (folder / "cli-test.eml").write_bytes(CLI_EML.read_bytes())
    return folder, sorted([*messages, folder / "cli-test.eml"], key=str)


def expected_comment(path: Path) -> dict:
    """What the standard library reads from the file: the fields the stored comment must carry."""
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    expected: dict = {}
    if message["Subject"] is not None:
        expected["subject"] = {"text": str(message["Subject"])}
    if message["From"] is not None and message["From"].addresses:
        expected["from"] = str(message["From"].addresses[0])
    for field in ("to", "cc"):
        header = message[field.capitalize()]
        if header is not None and header.addresses:
            expected[field] = [str(a) for a in header.addresses]
    if message["Date"] is not None and message["Date"].datetime is not None:
        sent = parsedate_to_datetime(str(message["Date"]))
        expected["sent_at_epoch"] = sent.timestamp()
    part = message.get_body(("plain", "html")) if message.is_multipart() else message
    if part is not None and part.get_content_maintype() == "text":
        text = part.get_content()
        expected["body"] = html_text(text) if part.get_content_subtype() == "html" else text
    return expected


def stored_matches(stored: dict, expected: dict) -> None:
    from datetime import datetime

    [entry] = stored["messages"]
    for key in ("subject", "from", "to", "cc"):
        assert entry.get(key) == expected.get(key), key
    if "sent_at_epoch" in expected:
        assert entry["sent_at"].endswith("Z")  # UTC
        assert datetime.fromisoformat(entry["sent_at"].replace("Z", "+00:00")).timestamp() == expected["sent_at_epoch"]
        assert stored["timestamp"] == entry["sent_at"]
    else:
        assert "sent_at" not in entry
    if "body" in expected:
        assert entry["body"]["text"] == expected["body"][:65536]


def test_a_folder_of_real_emails_uploads_as_the_stdlib_reads_them(workspace, hook, emulator, tmp_path, context):
    folder, files = real_folder(tmp_path)
    before = emulator.billed()
    result = upload(workspace, folder, user_properties={"string:Channel": "email"}).execute(context)
    by_id: dict[str, Path] = {}
    for path in files:  # several of CPython's messages share a Message-ID: the last one read wins
        by_id[upload_id(path)] = path
    assert result["read"] == len(files) and result["rejected"] == result["invalid"] == 0
    # Several of CPython's messages share a Message-ID: the last one read is the comment, the others duplicates.
    assert result["new"] == len(by_id) and result["updated"] == result["unchanged"] == 0
    assert result["duplicates"] == len(files) - len(by_id) > 0
    billed = emulator.billed() - before
    assert billed == result["billed"]["at_least"] == result["billed"]["at_most"] == len(by_id)
    for comment_id, path in by_id.items():
        stored = hook.get_comment(workspace.source, comment_id)
        stored_matches(stored, expected_comment(path))
        assert stored["user_properties"] == {"string:Channel": "email"}
    cli = hook.get_comment(workspace.source, CLI_SAMPLE_ID)
    assert cli["attachments"] == [
        {"name": "hello.txt", "size": 12, "content_type": "text/plain"},
        {"name": "world.pdf", "size": 7302, "content_type": "application/pdf"},
    ]
    assert cli["messages"][0]["sent_at"] == "2023-10-25T17:03:22.000000Z"

    rerun = upload(workspace, folder, user_properties={"string:Channel": "email"}).execute(context)
    assert rerun["new"] == rerun["updated"] == 0 and rerun["unchanged"] == len(by_id)
    assert rerun["billed"] == {"at_least": 0, "at_most": 0, "exact": True, "why": []}
    assert emulator.billed() - before == billed  # nothing billed again


def upload_id(path: Path) -> str:
    from airflow_provider_cm.pipelines.emails import parse_eml

    return parse_eml(path.read_bytes()).comment_id


def test_the_same_messages_from_an_mbox_and_a_msg_are_the_same_comments(workspace, emulator, tmp_path, context):
    folder, files = real_folder(tmp_path)
    first = upload(workspace, folder).execute(context)
    box = mailbox.mbox(tmp_path / "archive.mbox")
    for path in files:
        box.add(path.read_bytes())
    box.close()
    billed = emulator.billed()
    again = upload(workspace, tmp_path / "archive.mbox").execute(context)
    assert again["read"] == len(files) and again["new"] == again["updated"] == again["rejected"] == 0
    assert again["unchanged"] + again["duplicates"] == len(files) and again["billed"]["at_most"] == 0
    assert emulator.billed() == billed and first["new"] > 0
    # Outlook's .msg of the CLI's sample is the same comment (not a new one); its plain body as
    # Outlook stored it differs from the .eml's in white space, so the text is updated.
    msg = upload(workspace, CLI_MSG).execute(context)
    assert msg["read"] == 1 and msg["new"] == 0 and msg["updated"] == 1


def test_bad_input_is_dead_lettered_with_file_index_and_reason(workspace, hook, emulator, tmp_path, context):
    folder = tmp_path / "drop"
    copy_as_eml([p for p in cpython_messages() if p.name in ("msg_02.txt", "msg_19.txt")], folder)
    (folder / "empty.eml").write_bytes(b"")
    (folder / "readme.txt").write_text("not an e-mail")
    box = mailbox.mbox(folder / "box.mbox")
    box.add(CLI_EML.read_bytes())
    box.add(b"From: broken\n")  # header only: a message with an empty body is still an e-mail
    box.close()
    huge = "From: a@example.com\nSubject: huge headers\nX-Long: " + "x" * 70000 + "\n\nbody\n"
    (folder / "huge.eml").write_text(huge)
    with pytest.raises(CommunicationsMiningRejectedEmailsError, match="4 e-mail") as info:
        upload(workspace, folder).execute(context)
    result = context["ti"].xcom["return_value"]
    assert result["read"] == 7 and result["rejected"] == result["invalid"] == 4
    assert result["new"] == 3 and result["new"] + result["rejected"] == result["read"]
    dead = read_jsonl(result["dead_letter_path"])
    assert result["dead_letter_path"] == str(tmp_path / "drop.rejected.jsonl")
    assert [(Path(d["file"]).name, d["index"], d["stage"], d["field"]) for d in dead] == [
        ("empty.eml", 0, "read", None),
        ("huge.eml", 0, "check", "raw_email.headers.raw"),
        ("msg_19.eml", 0, "read", None),
        ("readme.txt", None, "read", None),
    ]
    assert all(d["reason"] for d in dead) and info.value.unreadable[0].endswith("empty.eml#0")
    hook.get_comment(workspace.source, CLI_SAMPLE_ID)  # the good ones were uploaded all the same


def test_refused_documents_are_found_by_bisection(workspace, emulator, tmp_path, context):
    folder, files = real_folder(tmp_path)
    refused = upload_id(files[5])
    emulator.admin("POST", "faults", {"reject_comment_ids": {refused: "the platform refuses this one"}})
    try:
        result = upload(workspace, folder, batch_size=16, fail_on_rejected=False).execute(context)
    finally:
        emulator.admin("DELETE", "faults")
    assert result["rejected"] == 1 and result["invalid"] == 0
    counted = ("new", "updated", "unchanged", "rejected", "duplicates")
    assert sum(result[key] for key in counted) == result["read"]
    [dead] = read_jsonl(result["dead_letter_path"])[:1]
    assert dead["stage"] == "sync-raw-emails" and dead["id"] == refused and dead["status_code"] == 400
    assert "refuses this one" in dead["reason"]


def test_dry_run_and_budget_cap_send_nothing(workspace, emulator, tmp_path, context):
    folder, files = real_folder(tmp_path)
    calls = emulator.requests_to(ROUTE)
    billed = emulator.billed()
    dry = upload(workspace, folder, dry_run="true").execute(context)
    assert dry["dry_run"] is True and dry["read"] == len(files) and dry["new"] == 0
    with pytest.raises(AirflowFailException, match="max_emails=3"):
        upload(workspace, folder, max_emails=3).execute(context)
    assert emulator.requests_to(ROUTE) == calls and emulator.billed() == billed


def test_batches_by_count_and_bytes(workspace, emulator, tmp_path, context):
    folder, files = real_folder(tmp_path)
    calls = emulator.requests_to(ROUTE)
    upload(workspace, folder, batch_size=10).execute(context)
    unique = len({upload_id(p) for p in files})
    assert emulator.requests_to(ROUTE) - calls == -(-unique // 10)
    calls = emulator.requests_to(ROUTE)
    upload(workspace, folder, max_batch_bytes=1).execute(context)
    assert emulator.requests_to(ROUTE) - calls == unique


def test_parameters_are_checked_before_anything_is_read(workspace, tmp_path, context):
    with pytest.raises(AirflowFailException, match="user_properties"):
        upload(workspace, CLI_EML, user_properties={"Channel": "x"}).execute(context)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        upload(workspace, tmp_path / "nothing-here").execute(context)
    with pytest.raises(AirflowFailException, match="does not exist"):
        CommunicationsMiningUploadEmailsOperator(
            task_id="t", source=f"{workspace.project}/nope", input_path=str(CLI_EML)
        ).execute(context)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert upload(workspace, empty).execute(context)["read"] == 0
    with pytest.raises(AirflowFailException, match="no e-mail"):
        upload(workspace, empty, fail_on_empty=True).execute(context)


def test_declares_the_source_asset_and_is_registered():
    from airflow_provider_cm import get_provider_info

    operator = CommunicationsMiningUploadEmailsOperator(task_id="t", source="p/s", input_path="/x")
    [outlet] = operator.outlets
    assert outlet.uri == "communications-mining-source://p/s"
    modules = get_provider_info()["operators"][0]["python-modules"]
    assert "airflow_provider_cm.operators.emails" in modules
    assert json.dumps(operator.template_fields)


def test_encoded_words_charsets_and_missing_headers_are_stored_as_the_stdlib_reads_them(
    workspace, hook, tmp_path, context
):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "latin.eml").write_bytes(
        b"From: =?iso-8859-1?q?Andr=E9?= <andre@example.com>\r\nTo: =?utf-8?b?w4lsaXNl?= <elise@example.com>\r\n"
        b"Cc: a@example.com, B <b@example.com>\r\nSubject: =?utf-8?b?w6l0w6k=?= report\r\n"
        b"Date: Tue, 6 Oct 2026 23:30:00 -0200\r\nMessage-ID: <latin-1@example.com>\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9 cr\xe8me\r\n"
    )
    (folder / "bare.eml").write_bytes(b"Subject: no sender, no date, no id\n\nhello\n")
    (folder / "html.eml").write_bytes(
        b"From: c@example.com\nMessage-ID: <html-only@example.com>\nContent-Type: text/html; charset=utf-8\n\n"
        b"<html><head><style>p {color: red}</style></head><body><p>Hello&nbsp;there</p><p>Second</p></body></html>\n"
    )
    result = upload(workspace, folder).execute(context)
    assert result["new"] == 3 and result["rejected"] == 0
    latin = hook.get_comment(workspace.source, "latin-1@example.com")
    stored_matches(latin, expected_comment(folder / "latin.eml"))
    message = latin["messages"][0]
    assert message["from"] == "André <andre@example.com>" and message["to"] == ["Élise <elise@example.com>"]
    assert message["subject"] == {"text": "été report"} and message["body"] == {"text": "café crème\r\n"}
    assert message["sent_at"] == "2026-10-07T01:30:00.000000Z"  # the Date in UTC
    bare_id = upload_id(folder / "bare.eml")
    bare = hook.get_comment(workspace.source, bare_id)
    assert bare_id.startswith("sha256-") and "from" not in bare["messages"][0] and "sent_at" not in bare["messages"][0]
    html = hook.get_comment(workspace.source, "html-only@example.com")
    assert html["messages"][0]["body"] == {"text": "Hello there\n\nSecond"}  # the text of the HTML body
    again = upload(workspace, folder).execute(context)
    assert again["unchanged"] == 3  # the one without a Date keeps its first timestamp: nothing changes
