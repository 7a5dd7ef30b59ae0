"""The rules of ``cognito_s3_to_redshift`` (pure): which landed batches one load takes, the pace of loads, the manual
Params."""

from __future__ import annotations
