"""Work that needs no Airflow, with the client or hook passed in: the upload's batch-sync loop
(:mod:`.batch_sync`), the stream-drain loop (:mod:`.stream_drain`), the readers and checks of
comments and e-mails, and the warehouse model."""
