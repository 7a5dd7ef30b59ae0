"""Airflow Assets that connect the DAGs (data-aware scheduling).

Their URIs are logical names, not S3 locations: the landing bucket is a run-time setting, and
nothing may be read at DAG-parse time. The real locations travel in the asset events' ``extra``.
"""

from __future__ import annotations

from airflow.sdk import Asset

#: Emitted by ``cognito_stream_to_s3`` when at least one batch was landed; schedules
#: ``cognito_s3_to_redshift``. Event extra: ``{"batches": n, "descriptors": [s3 URIs, at most
#: landing.tasks.DESCRIPTORS_IN_EVENT], "descriptors_omitted": m, "records_*": counts}``.
LANDED_BATCHES = Asset(
    name="cognito_streams_landed_batches",
    uri="cognito-streams://landing/batches",
    group="cognito_streams",
)

#: Emitted by ``cognito_s3_to_redshift`` after a load commits (for reports and downstream users).
WAREHOUSE_LOADED = Asset(
    name="cognito_streams_warehouse_loaded",
    uri="cognito-streams://warehouse/loaded",
    group="cognito_streams",
)
