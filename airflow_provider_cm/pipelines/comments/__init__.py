"""The upload of comments to a source and of their annotations to a dataset, apart from any task.

Reading and checking input files (:mod:`.comment_files`, :mod:`.comment_validation`), duplicate
ids (:mod:`.id_hashes`), the spool of validated records (:mod:`.spool`), what a rerun must
write again (:mod:`.annotation_changes`), the counts (:mod:`.upload_tally`) and the engine that
sends it all (:mod:`.engine`). The operator
(:class:`~airflow_provider_cm.operators.comments.CommunicationsMiningUploadCommentsOperator`)
adds parameters, the plan, XCom, lineage and Assets. Nothing here reads a task's context or an
operator's attributes; only the hook and the exceptions rest on Airflow's base classes.
"""
