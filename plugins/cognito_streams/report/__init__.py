"""Pipeline health: gathered live (``gather``), kept over time (``samples``), emitted as Airflow metrics
(``metrics``), shown by the UI plugin (``plugins/cognito_streams_ui.py``) and checked for stalls by the
``cognito_pipeline_health`` DAG. The rules are pure, in ``cognito_streams.core.report.health``."""

from __future__ import annotations
