"""``cognito_reconcile``: read both sides (warehouse, Cognito Sync) and compare (the rules are
``core.reconcile``)."""

from __future__ import annotations
