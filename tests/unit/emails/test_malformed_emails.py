"""No e-mail file, however malformed, ends the read with anything but a document or a dead-letter entry.

The e-mail engine's read (:meth:`~airflow_provider_cm.pipelines.emails.upload.EmailUploadEngine.read`: the
folder walker, the ``.eml``, mbox and ``.msg`` readers, the document check, the UTF-8 spool and
dead-letter files the operator gives it) runs on arbitrary bytes and on mutations of real
e-mails: CPython's ``email`` test messages and the CLI's samples. It must raise nothing; every
e-mail or file must end as a spooled document (UTF-8 JSON) or a dead-letter entry naming its
file and index. Examples: ``tests/fuzzing.py``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_cm.pipelines.batch_sync import DeadLetters
from airflow_provider_cm.pipelines.emails import DEFAULT_TRANSFORM_TAG
from airflow_provider_cm.pipelines.emails.readers import EmailItem, EmailProblem, email_files, iter_emails
from airflow_provider_cm.pipelines.emails.upload import EmailUploadEngine, EmailUploadRun, EmailUploadSettings
from tests.emails_data import CLI_EML, CLI_MSG, CLI_MSG_ANSI, cpython_email_data
from tests.fuzzing import fuzz_settings, mutated

SETTINGS = EmailUploadSettings(
    source="p/s", user_properties={}, transform_tag=DEFAULT_TRANSFORM_TAG, batch_size=8, max_batch_bytes=1 << 20,
    sync_concurrency=1,
)  # fmt: skip
LOG = logging.getLogger("tests.emails.malformed")
FROM_LINE = b"From someone@example.com Mon Jan  1 00:00:00 2026\n"


def _samples() -> list[bytes]:
    found = cpython_email_data()
    messages = sorted(found.glob("msg_*.txt")) if found is not None else []
    return [p.read_bytes() for p in [*messages, CLI_EML]]


EML_SAMPLES = _samples()
MSG_SAMPLES = [CLI_MSG.read_bytes(), CLI_MSG_ANSI.read_bytes()]


def read_folder(files: dict[str, bytes]) -> EmailUploadRun:
    """Write ``files`` into a folder and read it as the operator does; check what came out."""
    with (
        tempfile.TemporaryDirectory(prefix="cm-fuzz-") as folder,
        tempfile.TemporaryFile("w+", encoding="utf-8") as spool,
        tempfile.TemporaryFile("w+", encoding="utf-8") as dead_letters,
    ):
        for name, data in files.items():
            path = Path(folder) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        run = EmailUploadRun(dead_letters=DeadLetters(dead_letters, LOG))
        engine = EmailUploadEngine(None, SETTINGS, LOG, run)  # type: ignore[arg-type]  # read only: no hook
        engine.read(email_files(Path(folder)), lambda p: str(Path(p).relative_to(folder)), spool, "fuzz/")
        spool.seek(0)
        documents = [json.loads(line) for line in spool]
        dead_letters.seek(0)
        dead = [json.loads(line) for line in dead_letters]
    assert len(documents) + len(dead) == run.read >= len(files)
    for entry in documents:
        assert entry["file"] in files and entry["index"] >= 0
        json.dumps(entry["document"], ensure_ascii=False).encode("utf-8")  # strict UTF-8, as it is sent
    for entry in dead:
        assert entry["file"] in files and entry["reason"] and entry["stage"] in ("read", "check")
    return run


@fuzz_settings(examples=40)
@given(mutated(EML_SAMPLES))
def test_mutated_eml_files_give_a_document_or_a_dead_letter(data):
    read_folder({"in.eml": data})


@fuzz_settings(examples=25)
@given(st.lists(mutated(EML_SAMPLES, max_edits=3), min_size=1, max_size=4), st.binary(max_size=64))
def test_mutated_mbox_files_give_documents_or_dead_letters(messages, head):
    read_folder({"in.mbox": head + b"\n".join(FROM_LINE + m for m in messages)})


@fuzz_settings(examples=20)
@given(mutated(MSG_SAMPLES + EML_SAMPLES[:3]))
def test_mutated_msg_files_give_a_document_or_a_dead_letter(data):
    read_folder({"in.msg": data})


@fuzz_settings(examples=25)
@given(
    st.dictionaries(
        st.tuples(st.sampled_from(["", "a/", "a/b/", ".hidden/"]), st.sampled_from(["x", "y", "z"]),
                  st.sampled_from([".eml", ".mbox", ".msg", ".EML", ".txt", ""])).map("".join),
        st.binary(max_size=300) | mutated(EML_SAMPLES, max_edits=2),
        min_size=1,
        max_size=5,
    )
)  # fmt: skip
def test_a_folder_of_arbitrary_files_gives_documents_or_dead_letters(files):
    read_folder(files)


# -- named cases ----------------------------------------------------------------------------------


def test_a_message_id_that_is_not_utf8_gives_a_sendable_document_with_a_hashed_id():
    """The parser keeps such bytes as escapes, which no UTF-8 file or request can carry (it crashed the spool)."""
    run = read_folder({"in.eml": b"Message-ID: <\xff\xfe@example.com>\nSubject: caf\xe9\n\nbody \xff\n"})
    [comment_id] = run.last
    assert run.valid == 1 and comment_id.startswith("msgid-sha256-")


def test_a_link_to_nothing_is_said_not_skipped(tmp_path):
    (tmp_path / "gone.eml").symlink_to(tmp_path / "nowhere.eml")
    [problem] = list(iter_emails(email_files(tmp_path), shown=lambda p: p.name))
    assert isinstance(problem, EmailProblem) and problem.file == "gone.eml" and "cannot be read" in problem.reason


def _message(n: int) -> bytes:
    return FROM_LINE + f"From: a@example.com\nMessage-ID: <m{n}@example.com>\nSubject: {n}\n\nbody {n}\n".encode()


def test_an_mbox_written_to_while_it_is_read_keeps_the_messages_read_before_and_names_the_file(tmp_path):
    path = tmp_path / "in.mbox"
    path.write_bytes(b"".join(_message(n) for n in range(3)))
    items = iter_emails([path], shown=lambda p: p.name)
    first = next(items)
    with path.open("r+b") as writer:  # a mail client compacting the file under the reader
        writer.truncate(len(_message(0)) + 10)
    rest = list(items)
    assert isinstance(first, EmailItem) and first.email.comment_id == "m0@example.com"
    [problem] = rest
    assert isinstance(problem, EmailProblem) and (problem.file, problem.index) == ("in.mbox", None)
    assert "changed while it was read" in problem.reason and "its first 1 of 3 messages were read" in problem.reason


def test_an_unchanged_mbox_gives_every_message(tmp_path):
    path = tmp_path / "in.mbox"
    path.write_bytes(b"".join(_message(n) for n in range(3)))
    assert [i.email.comment_id for i in iter_emails([path]) if isinstance(i, EmailItem)] == [
        "m0@example.com",
        "m1@example.com",
        "m2@example.com",
    ]
