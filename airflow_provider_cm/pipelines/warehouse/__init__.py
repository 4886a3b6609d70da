"""The typed warehouse model: one definition of the tables, row builders, a row hash, the BI view,
and the writers into SQL (SQLAlchemy) and Parquet (pyarrow). No Airflow: an Airflow task hands in
the engine (common-sql's ``get_sqlalchemy_engine()``) or the target path.

See ``docs/warehouse.md`` for the model and what each table holds.
"""
