"""Comments as the API defines them, apart from any client, server or task.

:mod:`.schema` holds the one definition of a comment (and of a record of the ``re create
comments`` JSONL format) that both the upload's validator
(:mod:`airflow_provider_cm.upload.comment_validation`) and the emulator's request checks
(:mod:`airflow_provider_cm.emulator.comments`) use, so the two cannot drift. Nothing here imports
Airflow, FastAPI or the emulator.
"""
