"""The demo's verdict on the Redshift path: the emulator's log is read back (clients, COPYs, refusals), and a demo
on ``CS_WAREHOUSE=redshift`` whose log shows no redshift-connector session or no COPY fails, whatever the
reconciliation says."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from local.demo import DemoResult, conclude
from local.redshift.logread import EmulatorLog, log_size, read_emulator_log
from local.stack import StackConfig

LOG = """\
2026-12-06 00:06:13,100 INFO local.redshift: Redshift emulator on 127.0.0.1:45663 (database dev, user awsuser, ...)
2026-12-06 00:06:13,667 INFO local.redshift: session 1: client PostgreSQL protocol client (libpq/psycopg or similar; \
no driver_version) (application_name='', user='awsuser', from ('127.0.0.1', 37562)), backend pid 27073
2026-12-06 00:06:17,110 INFO local.redshift: session 2: client Redshift Python Driver 2.2.0, client_protocol_version=2 \
(application_name='tenacity', user='awsuser', from ('127.0.0.1', 37568)), backend pid 27202
2026-12-06 00:06:18,837 INFO local.redshift.copy: COPY stg_changes from s3://b/m.manifest: 25 row(s) from 1 file(s)
2026-12-06 00:06:18,839 INFO local.redshift: session 2: COPY 25 rows (0.89 s): copy stg_changes from \
's3://b/m.manifest' iam_role 'arn:aws:iam::123456789012:role/r' format as parquet manifest
2026-12-06 00:06:19,001 INFO local.redshift: session 2: COPY FAILED (0.10 s): Spectrum Scan Error | copy stg_rejects \
from 's3://b/r.manifest' iam_role 'arn:aws:iam::123456789012:role/r' format as parquet manifest
2026-12-06 00:06:19,500 INFO local.redshift: session 2: REFUSED bound LIMIT: Not implemented | statement: select 1 \
limit $1
2026-12-06 00:06:20,000 INFO local.redshift: session 2: closed
"""


def test_the_log_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "redshift.log"
    path.write_text(LOG)
    log = read_emulator_log(path)
    assert log.clients == {
        "PostgreSQL protocol client (libpq/psycopg or similar; no driver_version)": 1,
        "Redshift Python Driver 2.2.0, client_protocol_version=2": 1,
    }
    assert log.redshift_connector_sessions == 1
    assert log.copies == [
        (25, "copy stg_changes from 's3://b/m.manifest' iam_role 'arn:aws:iam::123456789012:role/r' format as parquet "
         "manifest")
    ]  # fmt: skip
    assert log.rows_copied == 25 and len(log.copies_failed) == 1
    assert log.refused == ["bound LIMIT: Not implemented | statement: select 1 limit $1"]
    assert log.problems() == []
    # a stretch read from where the log ended earlier holds only what came after
    size = log_size(path)
    with open(path, "a") as fh:
        fh.write(LOG.splitlines(keepends=True)[2])
    later = read_emulator_log(path, size)
    assert later.redshift_connector_sessions == 1 and later.copies == []
    assert later.problems() == ["no COPY from S3 was executed"]
    assert read_emulator_log(tmp_path / "missing.log").problems() == [
        "no session of redshift-connector (Redshift Python Driver ...) connected",
        "no COPY from S3 was executed",
    ]


@pytest.mark.parametrize(
    ("log", "code"),
    [
        (EmulatorLog(), 1),  # the DAGs never reached the emulator
        (EmulatorLog(clients=Counter({"Redshift Python Driver 2.2.0": 3})), 1),  # no COPY: rows did not come from S3
        (EmulatorLog(clients=Counter({"Redshift Python Driver 2.2.0": 3}), copies=[(5, "copy t from 's3://b/m'")]), 0),
    ],
)
def test_a_redshift_demo_fails_unless_the_log_shows_the_redshift_path(
    log: EmulatorLog, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a demo on the Redshift emulator that reconciled with 0 mismatches
    result = DemoResult(
        warehouse="redshift", redshift_log=log, redshift_log_file=Path("/x/redshift.log"),
        reconciliation={"mismatches": 0},
    )  # fmt: skip
    # WHEN it concludes THEN its exit code depends on what the emulator's log shows
    assert conclude(result, StackConfig()) == code
    out, err = capsys.readouterr()
    assert "Redshift emulator sessions" in out and "COPY from S3 it executed" in out
    if code:
        assert "FAILED: CS_WAREHOUSE=redshift, but the Redshift emulator's log (/x/redshift.log) shows no" in err
    else:
        assert "OK: the warehouse matches Cognito Sync exactly." in out


def test_a_stand_in_demo_reads_no_emulator_log(capsys: pytest.CaptureFixture[str]) -> None:
    assert conclude(DemoResult(reconciliation={"mismatches": 0}), StackConfig()) == 0
    assert "Redshift emulator" not in capsys.readouterr().out
