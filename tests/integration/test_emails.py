"""Raw e-mails over real HTTP against an emulator process: upload through faults, predict, the 400s."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_cm.exceptions import CommunicationsMiningBadRequestError
from airflow_provider_cm.operators.emails import CommunicationsMiningUploadEmailsOperator
from airflow_provider_cm.pipelines.emails import parse_eml, parse_msg
from tests.conftest import make_record
from tests.emails_data import CLI_EML, CLI_MSG, CLI_SAMPLE_ID, NOT_EMAILS, copy_as_eml, cpython_messages


def test_sync_raw_emails_over_http_returns_the_comments_it_made(hook, workspace, emulator):
    documents = [parse_eml(CLI_EML.read_bytes()).document, parse_msg(CLI_MSG.read_bytes()).document]
    answer = hook.sync_raw_emails(workspace.source, documents[:1], include_comments=True)
    assert (answer["new"], answer["updated"], answer["unchanged"]) == (1, 0, 0)
    [comment] = answer["comments"]
    assert comment["id"] == CLI_SAMPLE_ID and comment["timestamp"] == "2023-10-25T17:03:22.000000Z"
    message = comment["messages"][0]
    assert message["from"] == "Joe Prosser <joe.prosser@uipath.com>"
    assert message["to"] == ["Andra Buica <andra.buica@uipath.com>"]
    without = dict(documents[0])
    del without["comment_id"]  # the emulator derives the same id from the Message-ID
    again = hook.sync_raw_emails(workspace.source, [without])
    assert again["unchanged"] == 1 and again["comments"] == []
    with pytest.raises(CommunicationsMiningBadRequestError, match=r"documents\[0\]\.raw_email\.body"):
        hook.sync_raw_emails(workspace.source, [{"raw_email": {"headers": {"raw": ""}, "body": {}}}])


def test_upload_through_dropped_connections_bills_each_email_once(hook, workspace, emulator, tmp_path, context):
    folder = tmp_path / "mail"
    copy_as_eml([p for p in cpython_messages() if p.name not in NOT_EMAILS], folder)
    rule = {"kind": "drop_after", "path_contains": "/sync-raw-emails", "method": "POST", "every": 2}
    emulator.admin("POST", "faults", {"faults": [rule]})
    before = emulator.billed()
    try:
        result = CommunicationsMiningUploadEmailsOperator(
            task_id="upload", source=workspace.source, input_path=str(folder), batch_size=8
        ).execute(context)
    finally:
        emulator.admin("DELETE", "faults")
    unique = len({parse_eml(p.read_bytes()).comment_id for p in folder.iterdir()})
    billed = emulator.billed() - before
    assert result["new"] + result["unchanged"] == unique and result["rejected"] == 0
    assert billed == unique  # each e-mail once, however often a batch was resent
    assert result["billed"]["at_least"] <= billed <= result["billed"]["at_most"]
    assert not result["billed"]["exact"] and result["billed"]["why"]  # resent after a possible commit: said


TRAINING = [
    ("please check that the attachments work", "Support > Attachments"),
    ("the attachment is missing", "Support > Attachments"),
    ("send me the invoice", "Billing > Invoice"),
    ("the invoice total is wrong", "Billing > Invoice"),
]


def test_predict_raw_emails_over_http_is_billed_per_email(hook, workspace, emulator):
    records = [make_record(f"t{i}", "2026-10-01T00:00:00Z", text, label) for i, (text, label) in enumerate(TRAINING)]
    hook.sync_comments(workspace.source, [r["comment"] for r in records])
    for record in records:
        uid = f"{workspace.source_id}.{record['comment']['id']}"
        hook.update_annotations(workspace.dataset, uid, labelling=record["labelling"])
    emulator.admin("POST", f"datasets/{workspace.dataset}/models", {"tag": "live"})
    documents: list[dict[str, Any]] = [parse_eml(CLI_EML.read_bytes()).document] * 3
    before = emulator.stats()["billed_predictions"]
    predictions = hook.predict_raw_emails(workspace.dataset, "live", documents, threshold="auto")
    assert len(predictions) == 3 and emulator.stats()["billed_predictions"] - before == 3
    assert all("auto_thresholds" in label for label in predictions[0]["labels"])
    with pytest.raises(CommunicationsMiningBadRequestError, match="raw_email"):
        hook.predict_raw_emails(workspace.dataset, 1, [{"user_properties": {}}])
    assert emulator.stats()["billed_predictions"] - before == 3  # a refused request bills nothing


def test_lineage_reads_the_files_and_writes_the_source_and_the_dead_letters(hook, workspace, emulator, tmp_path):
    from collections import defaultdict
    from types import SimpleNamespace

    from airflow_provider_cm.common.lineage import api_namespace
    from tests.conftest import FakeTaskInstance

    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "a.eml").write_bytes(CLI_EML.read_bytes())
    (folder / "b.eml").write_bytes(b"")
    operator = CommunicationsMiningUploadEmailsOperator(
        task_id="upload",
        source=workspace.source,
        input_path=str(folder),
        fail_on_rejected=False,
        dead_letter_path=str(tmp_path / "rejected.jsonl"),
    )
    events: defaultdict[Any, SimpleNamespace] = defaultdict(SimpleNamespace)
    result = operator.execute({"ti": FakeTaskInstance(), "outlet_events": events})
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(folder))]
    rows = [(d.namespace, d.name, d.outputFacets["outputStatistics"].rowCount) for d in lineage.outputs]
    assert rows == [
        (api_namespace(hook.endpoint), f"sources/{workspace.source}", 1),
        ("file", str(tmp_path / "rejected.jsonl"), 1),
    ]
    [outlet] = operator.outlets
    assert events[outlet].extra == result and result["new"] == 1 and result["rejected"] == 1


@pytest.fixture(scope="module")
def s3_bucket() -> Any:
    """S3 on moto's server in this process, reached through an Airflow connection named in the URIs."""
    import json
    import os

    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    extra = {"endpoint_url": url, "region_name": "us-east-1"}
    os.environ["AIRFLOW_CONN_AWS_CM_EMAILS"] = json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
    )
    client = boto3.client("s3", aws_access_key_id="testing", aws_secret_access_key="testing", **extra)
    client.create_bucket(Bucket="mail")
    try:
        yield "s3://aws_cm_emails@mail"
    finally:
        server.stop()
        os.environ.pop("AIRFLOW_CONN_AWS_CM_EMAILS", None)


def test_upload_from_an_object_storage_prefix(hook, workspace, emulator, s3_bucket, tmp_path, context):
    import mailbox

    from airflow.sdk import ObjectStoragePath

    day = ObjectStoragePath(f"{s3_bucket}/gateway/2026-10-05/")
    (day / "a.eml").write_bytes(CLI_EML.read_bytes())
    (day / "nested" / "b.msg").write_bytes(CLI_MSG.read_bytes())
    (day / "nested" / "empty.eml").write_bytes(b"")
    messages = [p for p in cpython_messages() if p.name not in NOT_EMAILS][:6]
    box = mailbox.mbox(tmp_path / "archive.mbox")
    for path in messages:
        box.add(path.read_bytes())
    box.close()
    (day / "archive.mbox").write_bytes((tmp_path / "archive.mbox").read_bytes())
    result = CommunicationsMiningUploadEmailsOperator(
        task_id="upload", source=workspace.source, input_path=f"{s3_bucket}/gateway/2026-10-05/", fail_on_rejected=False
    ).execute(context)
    unique = {parse_eml(p.read_bytes()).comment_id for p in messages} | {CLI_SAMPLE_ID}
    assert result["read"] == 1 + 1 + 1 + len(messages) and result["rejected"] == result["invalid"] == 1
    # The .msg is the .eml's e-mail; CPython's msg_01 and msg_03 share a Message-ID.
    assert result["new"] == len(unique) and result["duplicates"] == len(messages) + 2 - len(unique)
    assert result["dead_letter_path"] == f"{s3_bucket}/gateway/2026-10-05.rejected.jsonl"
    [dead] = [line for line in ObjectStoragePath(result["dead_letter_path"]).read_text().splitlines() if line]
    assert '"file": "s3://aws_cm_emails@mail/gateway/2026-10-05/nested/empty.eml"' in dead
