"""The pipeline-health report: the live page and its JSON (``gather``; served by the UI plugin,
``plugins/cognito_streams_ui.py``), the stall check of the ``cognito_pipeline_health`` DAG (``check``) and
the report file written after a reconciliation (``html_report``). The state it reads and the samples it keeps
are shared (``monitoring``); the rules are pure, in ``cognito_streams.core.report``."""

from __future__ import annotations
