"""Benchmarks (``make bench``); see harness.py."""

from __future__ import annotations

import sys
from pathlib import Path

# The pipeline's package lives in plugins/ (Airflow's plugins folder); benchmarks import it as Airflow does.
_PLUGINS = str(Path(__file__).resolve().parents[1] / "plugins")
if _PLUGINS not in sys.path:
    sys.path.insert(0, _PLUGINS)
