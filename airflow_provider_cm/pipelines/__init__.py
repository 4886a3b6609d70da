"""Work that needs no Airflow, with the client or hook passed in (upload loops, readers, the warehouse model)."""
