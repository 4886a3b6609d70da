"""Work that needs no Airflow, the client or hook passed in: the comment and e-mail uploads, the
readers and checks of their input, the warehouse row model."""
