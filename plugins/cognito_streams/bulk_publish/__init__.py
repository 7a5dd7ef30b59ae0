"""``cognito_bulk_publish``: the operator that starts a bulk publish, the trigger that waits for it, the
history in the warehouse (the decision is ``core.bulk_publish``)."""

from __future__ import annotations
