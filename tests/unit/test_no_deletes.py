"""The worker's IAM policy grants no ``s3:DeleteObject`` (README, "IAM": read/write the landing prefix, no
deletes; ``test_iam_policies.py``), so that a compromised worker cannot destroy landed data. moto evaluates no
IAM, so a delete in the code passes every test on the local stack and fails on AWS with AccessDenied: before,
every replay that superseded a batch did (issue 18, item 2's fix moved descriptors with copy + delete). This
checks the code itself, and the marker keys that replace the move."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cognito_streams.core.landing_format import LandingLayout

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
DAGS = Path(__file__).resolve().parents[2] / "dags"
#: boto3 S3 calls (and the S3Hook's) that delete objects.
DELETES = {"delete_object", "delete_objects", "delete_bucket", "DeleteObject", "DeleteObjects"}


def deleting_calls(source: str, where: str) -> list[str]:
    """``where:line name`` of every call (or string naming an API operation) in ``source`` that deletes S3
    objects."""
    found = []
    for node in ast.walk(ast.parse(source, where)):
        name = None
        if isinstance(node, ast.Attribute) and node.attr in DELETES:
            name = node.attr
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in DELETES:
            name = node.value
        if name:
            found.append(f"{where}:{node.lineno} {name}")
    return found


#: Modules no worker runs: ``make redshift-check`` runs by hand with the operator's credentials and deletes only
#: the objects it wrote under its own prefix (REDSHIFT_CHECK_S3_PREFIX).
NOT_RUN_BY_WORKERS = {"redshift_check.py"}


def test_nothing_the_workers_run_deletes_from_s3() -> None:
    files = sorted(p for p in [*PLUGINS.rglob("*.py"), *DAGS.rglob("*.py")] if p.name not in NOT_RUN_BY_WORKERS)
    assert len(files) > 50
    hits = [hit for path in files for hit in deleting_calls(path.read_text(), str(path.relative_to(PLUGINS.parent)))]
    assert hits == []


def test_the_check_sees_a_delete_however_it_is_called() -> None:
    source = "s3.delete_object(Bucket=b, Key=k)\nhook.get_conn().delete_objects(**kw)\ncall('DeleteObject', p)\n"
    assert deleting_calls(source, "x.py") == ["x.py:1 delete_object", "x.py:2 delete_objects", "x.py:3 DeleteObject"]


def test_a_marker_key_mirrors_its_descriptor_under_superseded() -> None:
    layout = LandingLayout("bucket", "/landing/zone/", "s")
    key = layout.batch_key("shardId-000000000000~replay-x", "1", "2", layout_time())
    marker = layout.superseded_key(key)
    assert key == "landing/zone/batches/stream=s/dt=2026-03-01/shardId-000000000000~replay-x/1-2.json"
    assert marker == "landing/zone/_superseded/batches/stream=s/dt=2026-03-01/shardId-000000000000~replay-x/1-2.json"
    assert layout.batch_key_of_marker(marker) == key
    # a listing prefix maps the same way, and the prefix of every marker is the prefix of the day's markers
    assert layout.superseded_prefix("2026-03-01") == "landing/zone/_superseded/batches/stream=s/dt=2026-03-01/"
    assert marker.startswith(layout.superseded_prefix("2026-03-01")) and marker.startswith(layout.superseded_prefix())
    # without a landing prefix too
    bare = LandingLayout("bucket", "", "s")
    assert bare.superseded_key("batches/stream=s/x.json") == "_superseded/batches/stream=s/x.json"
    assert bare.batch_key_of_marker("_superseded/batches/stream=s/x.json") == "batches/stream=s/x.json"


@pytest.mark.parametrize(
    "key", ["landing/zone/data/stream=s/x.parquet", "other/batches/stream=s/x.json", "landing/zone/batchesX/y.json"]
)
def test_only_descriptors_get_markers(key: str) -> None:
    with pytest.raises(ValueError, match="only batch descriptors are superseded"):
        LandingLayout("bucket", "landing/zone", "s").superseded_key(key)


def layout_time():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime(2026, 3, 1, 10, tzinfo=UTC)
