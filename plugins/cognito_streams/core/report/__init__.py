"""The rules of the pipeline-health report (pure): the assessment (stall, watermark, freshness) and the HTML."""

from __future__ import annotations
