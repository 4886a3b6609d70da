"""Every night, upload the e-mails a mail gateway dropped for the day into a Communications Mining source.

The gateway writes each e-mail it receives as an ``.eml`` file (Outlook exports ``.msg``, archives
are mbox files: all three are read) under ``<CM_MAIL_ROOT>/<YYYY-MM-DD>/``, the day it arrived.
Each run reads the folder of its data interval's day, recursively, parses and checks every e-mail
before sending anything, and upserts them with ``sync-raw-emails``: raw headers, the body,
attachment names, sizes and types (never their content). Comment ids come from the
``Message-ID``, so a rerun or a backfill of a day bills nothing twice, and an e-mail the gateway
delivered twice is one comment. What is not an e-mail or breaks the API's limits goes, with the
file, the message's index and the reason, to ``<CM_MAIL_ROOT>/<YYYY-MM-DD>.rejected.jsonl``; the
run then fails after uploading every other e-mail, so someone looks. A day without a folder fails
the run: the gateway delivered nothing, which is worth knowing.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_SOURCE`` | ``demo/mailbox`` | the source, ``project/source`` |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_MAIL_ROOT`` | ``/tmp/cm-demo/mail`` | a local folder or a URI (``s3://aws_default@bucket/mail``) |
| ``CM_MAX_EMAILS`` | ``20000`` | refuse a bigger (more expensive) day, before sending anything |

Schedule: daily at 00:00 UTC with data intervals (``CronDataIntervalTimetable``), each run
covering the day before; trigger backfills for earlier days.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable

from airflow_provider_cm.operators.emails import CommunicationsMiningUploadEmailsOperator

SOURCE = os.environ.get("CM_SOURCE", "demo/mailbox")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
MAIL_ROOT = os.environ.get("CM_MAIL_ROOT", "/tmp/cm-demo/mail").rstrip("/")
MAX_EMAILS = int(os.environ.get("CM_MAX_EMAILS", "20000"))

with DAG(
    dag_id="cm_upload_emails",
    description="Upload each day's e-mails (.eml, .msg, mbox) from object storage into a Communications Mining source",
    doc_md=__doc__,
    # Data intervals: each run covers the previous day, [00:00, 24:00) UTC.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    # A retry is safe: e-mails already stored unchanged are skipped, so nothing is billed twice.
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["communications-mining", "example"],
) as dag:
    # [START howto_operator_cm_upload_emails]
    upload_emails = CommunicationsMiningUploadEmailsOperator(
        task_id="upload_emails",
        communications_mining_conn_id=CONN_ID,
        source=SOURCE,
        input_path=MAIL_ROOT + "/{{ data_interval_start | ds }}/",
        user_properties={"string:Gateway Day": "{{ data_interval_start | ds }}"},
        max_emails=MAX_EMAILS,
    )
    # [END howto_operator_cm_upload_emails]
