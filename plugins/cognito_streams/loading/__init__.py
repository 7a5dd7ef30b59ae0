"""``cognito_s3_to_redshift``: its task bodies and the pace of loads (adapters). The load of landed batches
itself is shared with the snapshot (``landing_zone.load``); the rules are ``core.loading``."""

from __future__ import annotations
