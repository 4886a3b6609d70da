"""Predictions on e-mails (predict-raw-emails): the predict operator with emails_path, billed per e-mail."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm.operators.models import CommunicationsMiningPredictOperator
from airflow_provider_cm.pipelines.emails import parse_eml
from tests.conftest import make_record, read_jsonl
from tests.emails_data import CLI_EML, CLI_MSG, CLI_SAMPLE_ID, NOT_EMAILS, copy_as_eml, cpython_messages

ROUTE = "POST /api/v1/datasets/{project}/{name}/labellers/{version}/predict-raw-emails"
TRAINING = [
    ("should we check that the attachments work", "Support > Attachments"),
    ("the attachment did not arrive, please resend the attachment", "Support > Attachments"),
    ("attachments missing from the mail", "Support > Attachments"),
    ("please send an invoice for the order", "Billing > Invoice"),
    ("the invoice amount is wrong", "Billing > Invoice"),
    ("where is my invoice", "Billing > Invoice"),
]


@pytest.fixture
def model_workspace(workspace, hook, emulator):
    """A workspace whose dataset has a model pinned as version 1, tagged live."""
    records = [make_record(f"t{i}", "2026-10-01T00:00:00Z", text, label) for i, (text, label) in enumerate(TRAINING)]
    hook.sync_comments(workspace.source, [r["comment"] for r in records])
    for record in records:
        hook.update_annotations(
            workspace.dataset, f"{workspace.source_id}.{record['comment']['id']}", labelling=record["labelling"]
        )
    assert emulator.admin("POST", f"datasets/{workspace.dataset}/models", {"tag": "live"})["version"] == 1
    return workspace


def predict(workspace, tmp_path, **kwargs) -> CommunicationsMiningPredictOperator:
    kwargs.setdefault("version", 1)
    return CommunicationsMiningPredictOperator(
        task_id="predict", dataset=workspace.dataset, output_path=str(tmp_path / "predictions.jsonl"), **kwargs
    )


def predicted(emulator) -> int:
    return emulator.stats()["billed_predictions"]


def test_predicts_a_folder_of_real_emails_billed_per_email(model_workspace, hook, emulator, tmp_path, context):
    folder = tmp_path / "mail"
    copies = copy_as_eml([p for p in cpython_messages() if p.name not in NOT_EMAILS][:10], folder)
    (folder / "zz-cli.eml").write_bytes(CLI_EML.read_bytes())
    (folder / "zz-cli.msg").write_bytes(CLI_MSG.read_bytes())
    before, stored, calls = predicted(emulator), emulator.billed(), emulator.requests_to(ROUTE)
    result = predict(model_workspace, tmp_path, emails_path=str(folder), batch_size=5, threshold=0).execute(context)
    count = len(copies) + 2
    assert result["count"] == result["billed"] == count and result["version"] == 1
    assert predicted(emulator) - before == count  # one per e-mail
    assert emulator.billed() == stored  # nothing stored, so no upload billed
    assert emulator.requests_to(ROUTE) - calls == -(-count // 5)
    rows = read_jsonl(result["path"])
    assert [r["id"] for r in rows] == [parse_eml(p.read_bytes()).comment_id for p in copies] + [CLI_SAMPLE_ID] * 2
    assert [r["index"] for r in rows] == [0] * count and rows[-1]["file"].endswith("zz-cli.msg")
    # The e-mail is predicted as the comment the platform makes of it: subject and body text.
    body = parse_eml(CLI_EML.read_bytes()).document["raw_email"]["body"]["plain"]
    message = {"subject": {"text": "Re: Testing the CLI!!"}, "body": {"text": body}}
    [as_comment] = hook.predict(model_workspace.dataset, 1, [{"messages": [message]}], threshold=0)
    assert rows[-2]["labels"] == [{**label, "name": " > ".join(label["name"])} for label in as_comment["labels"]]
    assert len(rows[-2]["labels"]) == 4 and all(row["labels"] for row in rows)


def test_predicts_with_the_live_tag(model_workspace, emulator, tmp_path, context):
    result = predict(model_workspace, tmp_path, version="live", emails_path=str(CLI_EML)).execute(context)
    assert result["count"] == 1 and result["version"] == "live"
    [row] = read_jsonl(result["path"])
    assert row["labels"] and row["id"] == CLI_SAMPLE_ID


def test_inputs_that_are_not_emails_fail_before_anything_is_billed(model_workspace, emulator, tmp_path, context):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.eml").write_bytes(CLI_EML.read_bytes())
    (folder / "b.eml").write_bytes(b"")
    (folder / "c.csv").write_text("id,text\n")
    before = predicted(emulator)
    with pytest.raises(AirflowFailException, match=r"(?s)2 input\(s\).*b\.eml#0: empty.*c\.csv: not an e-mail file"):
        predict(model_workspace, tmp_path, emails_path=str(folder)).execute(context)
    with pytest.raises(AirflowFailException, match="max_documents=0"):
        predict(model_workspace, tmp_path, emails_path=str(folder / "a.eml"), max_documents=0).execute(context)
    assert predicted(emulator) == before
    with pytest.raises(ValueError, match="only one of them"):
        predict(model_workspace, tmp_path, emails_path="x", input_path="y")
    with pytest.raises(ValueError, match="only one of them"):
        predict(model_workspace, tmp_path)
