"""The rules of ``cognito_s3_to_redshift`` (pure): which landed batches one load takes, and the pace of loads."""

from __future__ import annotations
