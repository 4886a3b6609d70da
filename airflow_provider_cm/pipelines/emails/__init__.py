"""E-mails as the API takes them raw (``sync-raw-emails``, ``predict-raw-emails``); needs no Airflow.

* :mod:`.documents`: one ``.eml``/mbox message (standard library ``email``) or ``.msg`` file
  (extract-msg) -> the raw-e-mail document and its stable comment id;
* :mod:`.readers`: a file or a folder (any ``pathlib``-like path) -> each e-mail or the problem
  in its place (file, message index, reason);
* :mod:`airflow_provider_cm.api.email_limits`: the one check of a document against the API's
  shape and limits, used by the operators before sending and by the emulator's routes on what they receive;
* :mod:`.upload`: the e-mail upload engine (read, check, batch, send, bisect refused batches)
  over a hook the caller gives; not imported here, so the emulator never loads it.
"""

from __future__ import annotations

from airflow_provider_cm.api.email_limits import (
    DEFAULT_TRANSFORM_TAG,
    MAX_PREDICT_DOCUMENTS,
    MAX_SYNC_DOCUMENTS,
    batch_problems,
    document_problems,
)
from airflow_provider_cm.pipelines.emails.documents import EmailError, ParsedEmail, comment_id, parse_eml, parse_msg
from airflow_provider_cm.pipelines.emails.readers import (
    EMAIL_SUFFIXES,
    EmailItem,
    EmailProblem,
    email_files,
    iter_emails,
)

__all__ = [
    "DEFAULT_TRANSFORM_TAG",
    "EMAIL_SUFFIXES",
    "MAX_PREDICT_DOCUMENTS",
    "MAX_SYNC_DOCUMENTS",
    "EmailError",
    "EmailItem",
    "EmailProblem",
    "ParsedEmail",
    "batch_problems",
    "comment_id",
    "document_problems",
    "email_files",
    "iter_emails",
    "parse_eml",
    "parse_msg",
]
