"""The schema-name guard refuses every reserved word of Amazon Redshift (AWS's full list) and of PostgreSQL:
a schema is substituted bare into every statement, so such a name would break the SQL on one engine."""

from __future__ import annotations

import pytest

from cognito_streams.core.reserved_words import POSTGRES_RESERVED, REDSHIFT_RESERVED, RESERVED
from cognito_streams.core.sql_text import SqlTextError, WarehouseSql, validate_identifier
from cognito_streams.settings import SettingsError, parse_settings
from tests.unit.test_settings_fuzz import VALID

#: Words issue 17 found accepted although Redshift reserves them.
FOUND_MISSING = ("raw", "system", "snapshot", "tag", "offline", "open", "new", "old", "timestamp", "top", "minus")


@pytest.mark.parametrize("word", sorted(REDSHIFT_RESERVED))
def test_every_redshift_reserved_word_is_refused_as_a_schema(word: str) -> None:
    # GIVEN a reserved word of Redshift (AWS, "Reserved words") WHEN used as the warehouse schema
    # THEN the SQL renderer refuses it, saying it is Redshift's
    with pytest.raises(SqlTextError, match="reserved word of Amazon Redshift"):
        WarehouseSql(word, "redshift")
    # AND so does the settings validation, naming the field
    with pytest.raises(SettingsError, match="warehouse_schema"):
        parse_settings({**VALID, "warehouse_schema": word})


@pytest.mark.parametrize("word", FOUND_MISSING)
def test_the_words_the_review_found_are_refused(word: str) -> None:
    with pytest.raises(SqlTextError, match="not a safe SQL identifier"):
        validate_identifier(word, "warehouse_schema")


def test_postgres_only_reserved_words_are_refused_too() -> None:
    for word in sorted(POSTGRES_RESERVED - REDSHIFT_RESERVED):
        with pytest.raises(SqlTextError, match="reserved word of PostgreSQL"):
            validate_identifier(word, "warehouse_schema")


def test_the_list_is_aws_list_in_full() -> None:
    # AWS's page lists 156 words (2026-11); START and CONNECT are named in its note. A shorter list is a copy error.
    assert len(REDSHIFT_RESERVED - {"start", "connect"}) == 156
    assert all(w == w.lower() and w.isidentifier() for w in RESERVED)


@pytest.mark.parametrize("name", ["cognito_sync", "analytics_2", "raw_data", "system_x", "_tag"])
def test_ordinary_names_still_pass(name: str) -> None:
    assert validate_identifier(name, "warehouse_schema") == name
    assert parse_settings({**VALID, "warehouse_schema": name}).warehouse_schema == name
