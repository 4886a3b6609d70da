"""Message queue providers of Airflow's common-messaging provider (``MessageQueueTrigger(scheme=...)``)."""
