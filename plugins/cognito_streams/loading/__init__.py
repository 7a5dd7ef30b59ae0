"""Load orchestration: the adapters between Airflow tasks, the landing zone (S3) and the warehouse."""
