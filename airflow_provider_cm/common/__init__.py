"""What the Airflow side (operators, sensors, triggers, transfers) shares: lineage, Assets, storage,
the if-exists rules, the extra link, worker identity, the connection form and Airflow version checks."""
