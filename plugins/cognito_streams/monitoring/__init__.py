"""Shared: what every feature measures and reads of the pipeline's state: the live state and its watermark
(``state``), the ``health_samples`` rows (``samples``), the Airflow metrics (``metrics``)."""

from __future__ import annotations
