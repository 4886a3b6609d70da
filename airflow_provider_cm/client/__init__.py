"""The HTTP client without Airflow: transport, settings, authentication, retries, pacing, concurrency
and the sliced export. The hook (:mod:`airflow_provider_cm.hooks`) wraps it for Airflow."""
