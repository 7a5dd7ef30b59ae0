"""The analysts' Python path of docs/analysts.md through the Redshift emulator: the page's example (pandas.read_sql
over SQLAlchemy's Redshift dialect, sqlalchemy-redshift on redshift-connector) runs as written, connecting the way
the dialect connects to Redshift (its catalog queries on connect included); and the PostgreSQL dialect, which the
page warns against, fails there as it fails on Redshift. The page's SQL blocks run in test_demo_flow.py, on the
demo's warehouse."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cognito_streams.warehouse.connect import open_warehouse
from local.redshift.logread import log_size
from tests.conftest import warehouse_env
from tests.support.changes import change
from tests.support.warehouse import drop_schema, pipeline_settings, unique_schema

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"


def python_example() -> str:
    """The page's one ```python block."""
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return block


@pytest.fixture(scope="module")
def loaded_schema(stack: Any) -> Iterator[str]:
    """A schema on the Redshift emulator, loaded by the pipeline's merge: four users' themes."""
    with warehouse_env(stack, "redshift"):
        settings = pipeline_settings(warehouse_schema=unique_schema("analysts"))
        with open_warehouse(settings) as wh:
            wh.ensure_schema()
            wh.merge_changes(
                [
                    change("theme", "dark", 1, 0, identity=f"us-east-1:00000000-0000-4000-8000-00000000000{n}",
                           dataset="app_prefs")
                    for n in (1, 2, 3)
                ]
                + [change("theme", "light", 1, 0, identity="us-east-1:00000000-0000-4000-8000-000000000004",
                          dataset="app_prefs")]
            )  # fmt: skip
        try:
            yield settings.warehouse_schema
        finally:
            drop_schema(settings.warehouse_schema)


def test_the_python_example_runs_against_the_emulator(
    loaded_schema: str, stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the variables the stack exports for analysts' tools (the emulator's endpoint, TLS off)
    assert os.environ["REDSHIFT_SSL"] == "false" and os.environ["REDSHIFT_PORT"] == str(stack.cfg.redshift_port)
    log_from = log_size(stack.redshift.log_file)
    # WHEN the page's example runs as written (on the test's schema)
    namespace: dict[str, Any] = {}
    exec(compile(python_example().replace("cognito_sync.", f"{loaded_schema}."), str(DOC), "exec"), namespace)  # noqa: S102
    # THEN it read the live records through SQLAlchemy's Redshift dialect on redshift-connector
    engine = namespace["engine"]
    assert engine.dialect.name == "redshift" and engine.dialect.driver == "redshift_connector"
    themes = namespace["themes"]
    assert [tuple(r) for r in themes.itertuples(index=False)] == [("dark", 3), ("light", 1)]
    assert "dark" in capsys.readouterr().out
    engine.dispose()
    # AND the emulator saw redshift-connector sessions of sqlalchemy-redshift, and refused nothing it sent on connect
    with open(stack.redshift.log_file, "rb") as fh:
        fh.seek(log_from)
        lines = fh.read().decode(errors="replace").splitlines()
    sessions = [line for line in lines if "application_name='sqlalchemy-redshift'" in line]
    assert sessions and all("client Redshift Python Driver" in line for line in sessions)
    assert [line for line in lines if "REFUSED" in line] == []


def test_the_postgresql_dialect_fails_as_on_redshift(loaded_schema: str) -> None:
    """What docs/analysts.md warns against: pandas over the PostgreSQL dialect opens a SAVEPOINT, which Redshift (and
    the emulator) refuse."""
    import pandas as pd
    import sqlalchemy as sa

    url = sa.URL.create(
        "postgresql+psycopg",
        host=os.environ["REDSHIFT_HOST"],
        port=int(os.environ["REDSHIFT_PORT"]),
        database=os.environ["REDSHIFT_DATABASE"],
        username=os.environ["REDSHIFT_USER"],
        password=os.environ["REDSHIFT_PASSWORD"],
        query={"sslmode": "disable"},
    )
    engine = sa.create_engine(url)
    try:
        with pytest.raises(sa.exc.DBAPIError, match=r'SQL command "SAVEPOINT .*" not supported'):
            pd.read_sql(sa.text(f"select count(*) from {loaded_schema}.live_records"), engine)
    finally:
        engine.dispose()
