"""core/reserved_words.py's PostgreSQL list is the running stand-in's own (pg_get_keywords())."""

from __future__ import annotations

import pytest

from cognito_streams.core.reserved_words import POSTGRES_RESERVED
from tests.support.warehouse import connect

pytestmark = pytest.mark.integration


def test_postgres_list_matches_the_server(stack) -> None:  # type: ignore[no-untyped-def]
    with connect() as conn:
        rows = conn.execute("select word from pg_get_keywords() where catcode in ('R', 'T')").fetchall()
    assert {r[0] for r in rows} == POSTGRES_RESERVED
