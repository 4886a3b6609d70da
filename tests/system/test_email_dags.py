"""The e-mail example DAG end to end with ``dag.test()``: a day of real e-mails dropped by a gateway.

The day's folder holds CPython's ``email`` test messages (those that are e-mails), the official
CLI's sample as ``.eml`` and as Outlook ``.msg``, and an mbox archive of a few of them again;
``cm_upload_emails`` uploads it into the emulator, and a rerun of the same day bills nothing.
"""

from __future__ import annotations

import mailbox
from datetime import datetime, timedelta, timezone

from airflow_provider_cm.pipelines.emails import parse_eml
from tests.conftest import new_workspace
from tests.emails_data import CLI_EML, CLI_MSG, CLI_SAMPLE_ID, NOT_EMAILS, copy_as_eml, cpython_messages
from tests.system.test_example_dags import load_dag, xcom_values

DAY = datetime(2026, 10, 5, tzinfo=timezone.utc)


def test_nightly_upload_of_a_days_emails_and_a_rerun_that_bills_nothing(
    emulator, airflow_db, hook, tmp_path, monkeypatch
):
    workspace = new_workspace(hook)
    day = tmp_path / "mail" / "2026-10-05"
    messages = copy_as_eml([p for p in cpython_messages() if p.name not in NOT_EMAILS], day / "gateway-a")
    (day / "gateway-b").mkdir()
    (day / "gateway-b" / "cli.eml").write_bytes(CLI_EML.read_bytes())
    (day / "gateway-b" / "cli.msg").write_bytes(CLI_MSG.read_bytes())
    box = mailbox.mbox(day / "archive.mbox")
    for path in messages[:5]:
        box.add(path.read_bytes())
    box.close()
    (tmp_path / "mail" / "2026-10-04").mkdir()  # another day's folder: not read
    (tmp_path / "mail" / "2026-10-04" / "other.eml").write_bytes(messages[0].read_bytes())
    monkeypatch.setenv("CM_SOURCE", workspace.source)
    monkeypatch.setenv("CM_MAIL_ROOT", str(tmp_path / "mail"))
    ids = {parse_eml(p.read_bytes()).comment_id for p in messages} | {CLI_SAMPLE_ID}
    read = len(messages) + 2 + 5

    before = emulator.billed()
    dag_run = load_dag("cm_upload_emails").test(logical_date=DAY + timedelta(days=1))
    assert dag_run.state == "success" and dag_run.data_interval_start == DAY
    counts = xcom_values(dag_run)["upload_emails"]
    assert counts["read"] == read and counts["rejected"] == 0 and counts["dead_letter_path"] is None
    assert counts["new"] == len(ids) and counts["duplicates"] == read - len(ids)
    assert emulator.billed() - before == counts["billed"]["at_least"] == len(ids)
    stored = hook.get_comment(workspace.source, CLI_SAMPLE_ID)
    assert stored["user_properties"] == {"string:Gateway Day": "2026-10-05"}
    assert stored["messages"][0]["subject"] == {"text": "Re: Testing the CLI!!"}

    billed = emulator.billed()
    rerun = load_dag("cm_upload_emails").test(logical_date=DAY + timedelta(days=1))
    assert rerun.state == "success"
    again = xcom_values(rerun)["upload_emails"]
    assert again["new"] == again["updated"] == 0 and again["unchanged"] == len(ids)
    assert emulator.billed() == billed


def test_a_day_with_bad_files_uploads_the_rest_and_fails_naming_them(emulator, airflow_db, hook, tmp_path, monkeypatch):
    workspace = new_workspace(hook)
    day = tmp_path / "mail" / "2026-10-05"
    day.mkdir(parents=True)
    (day / "good.eml").write_bytes(CLI_EML.read_bytes())
    (day / "empty.eml").write_bytes(b"")
    (day / "scan.pdf").write_bytes(b"%PDF-1.4")
    monkeypatch.setenv("CM_SOURCE", workspace.source)
    monkeypatch.setenv("CM_MAIL_ROOT", str(tmp_path / "mail"))
    dag_run = load_dag("cm_upload_emails").test(logical_date=DAY + timedelta(days=1))
    assert dag_run.state == "failed"
    assert (tmp_path / "mail" / "2026-10-05.rejected.jsonl").read_text().count("\n") == 2
    hook.get_comment(workspace.source, CLI_SAMPLE_ID)  # the good one is there
