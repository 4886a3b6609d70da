"""The e-mail upload engine on its own: a hook, its settings and a logger, no operator and no task context."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

from airflow_provider_cm.pipelines.batch_sync import DeadLetters
from airflow_provider_cm.pipelines.emails import DEFAULT_TRANSFORM_TAG
from airflow_provider_cm.pipelines.emails.upload import EmailUploadEngine, EmailUploadRun, EmailUploadSettings

ROUTE = "POST /api/v1/sources/{project}/{name}/sync-raw-emails"


def settings(workspace, **overrides) -> EmailUploadSettings:
    values = {
        "source": workspace.source,
        "user_properties": {"string:Channel": "engine test"},
        "transform_tag": DEFAULT_TRANSFORM_TAG,
        "batch_size": 3,
        "max_batch_bytes": 1 << 20,
        "sync_concurrency": 2,
    }
    return EmailUploadSettings(**{**values, **overrides})


def mail_folder(tmp_path: Path, count: int) -> list[Path]:
    """``count`` e-mails, one of them sent twice (same Message-ID), and a file that is no e-mail."""
    folder = tmp_path / "mail"
    folder.mkdir()
    for n in range(count):
        (folder / f"m{n:02d}.eml").write_bytes(
            f"From: a{n}@example.com\nTo: desk@example.com\nSubject: card {n} lost\n"
            f"Date: Tue, 6 Oct 2026 10:{n:02d}:00 +0000\nMessage-ID: <engine-{n}@example.com>\n\n"
            f"My card {n} is lost.\n".encode()
        )
    (folder / "m99-again.eml").write_bytes((folder / "m00.eml").read_bytes().replace(b"lost.", b"lost, again."))
    (folder / "empty.eml").write_bytes(b"")
    return sorted(folder.iterdir(), key=str)


def run(hook, workspace, files: list[Path], **overrides) -> tuple[EmailUploadEngine, io.StringIO]:
    log = logging.getLogger("tests.emails")
    engine = EmailUploadEngine(
        hook, settings(workspace, **overrides), log, EmailUploadRun(dead_letters=DeadLetters(io.StringIO(), log))
    )
    spool = io.StringIO()
    engine.read(files, lambda path: Path(path).name, spool, "mail/")
    spool.seek(0)
    engine.send(spool)
    return engine, spool


def test_the_engine_reads_checks_and_uploads_then_a_rerun_changes_nothing(hook, workspace, emulator, tmp_path):
    files = mail_folder(tmp_path, 7)
    billed, calls = emulator.billed(), emulator.requests_to(ROUTE)
    first, _ = run(hook, workspace, files)
    done = first.run
    assert (done.read, done.valid, len(done.duplicates), done.sent) == (9, 7, 1, 7)
    assert (done.tally.new, done.tally.rejected, done.unreadable) == (7, 1, ["empty.eml#0"])
    assert done.duplicates == [("m00.eml#0", "m99-again.eml#0")]  # only the later one is sent
    assert emulator.requests_to(ROUTE) - calls == 3  # 7 documents, 3 a batch
    assert emulator.billed() - billed == 7
    dead = json.loads(done.dead_letters.file.getvalue())
    assert (dead["file"], dead["index"], dead["stage"]) == ("empty.eml", 0, "read")
    stored = hook.get_comment(workspace.source, "engine-0@example.com")
    assert "again" in json.dumps(stored) and "engine test" in json.dumps(stored)

    again, _ = run(hook, workspace, files)
    assert (again.run.tally.unchanged, again.run.tally.new) == (7, 0)
    assert emulator.billed() - billed == 7  # nothing billed twice


def test_a_refused_document_is_found_by_bisection_and_the_rest_arrive(hook, workspace, emulator, tmp_path):
    files = mail_folder(tmp_path, 8)
    emulator.admin("POST", "faults", {"reject_comment_ids": {"engine-5@example.com": "the platform refuses it"}})
    try:
        engine, _ = run(hook, workspace, files, batch_size=8, sync_concurrency=1)
    finally:
        emulator.admin("DELETE", "faults")
    done = engine.run
    assert (done.tally.new, done.tally.rejected, done.sent) == (7, 2, 8)
    assert done.refused_ids == ["engine-5@example.com"]
    refused = [json.loads(line) for line in done.dead_letters.file.getvalue().splitlines()][-1]
    assert (refused["file"], refused["stage"], refused["status_code"]) == ("m05.eml", "sync-raw-emails", 400)
    assert "refuses it" in refused["reason"]


def test_batches_close_at_the_byte_limit(hook, workspace, emulator, tmp_path):
    files = mail_folder(tmp_path, 4)
    calls = emulator.requests_to(ROUTE)
    engine, _ = run(hook, workspace, files, batch_size=100, max_batch_bytes=1)
    assert emulator.requests_to(ROUTE) - calls == 4 and engine.run.tally.new == 4


def test_without_the_msg_extra_a_msg_file_is_dead_lettered_with_the_install_command(
    hook, workspace, emulator, tmp_path, monkeypatch, caplog
):
    """extract-msg is the optional ``msg`` extra: without it (its import blocked) the .msg file is not read,
    its dead letter says how to install it, and the other files are uploaded all the same."""
    from airflow_provider_cm.pipelines.emails.documents import MSG_EXTRA_MISSING
    from tests.emails_data import CLI_MSG

    files = mail_folder(tmp_path, 2)
    outlook = tmp_path / "mail" / "outlook.msg"
    outlook.write_bytes(CLI_MSG.read_bytes())
    monkeypatch.setitem(sys.modules, "extract_msg", None)  # `import extract_msg` raises ImportError
    billed = emulator.billed()
    with caplog.at_level(logging.WARNING, logger="tests.emails"):
        engine, _ = run(hook, workspace, sorted([*files, outlook], key=str))
    done = engine.run
    assert done.unreadable == ["empty.eml#0", "outlook.msg#0"]
    assert (done.sent, done.tally.new) == (2, 2)
    assert emulator.billed() - billed == 2
    dead = [json.loads(line) for line in done.dead_letters.file.getvalue().splitlines()]
    msg = next(letter for letter in dead if letter["file"] == "outlook.msg")
    assert (msg["stage"], msg["reason"]) == ("read", MSG_EXTRA_MISSING)
    assert 'pip install "airflow-provider-cm[msg]"' in msg["reason"]
    assert "Traceback" not in caplog.text and MSG_EXTRA_MISSING in caplog.text
