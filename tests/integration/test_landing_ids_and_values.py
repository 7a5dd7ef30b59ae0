"""Ids the warehouse cannot hold, pools that are not ours, and values it cannot store as they are, through the
landing task and the loader (issue 17 item 1, issue 18 items 4 and 14)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cognito_streams.core.reconcile import WarehouseRecord, value_matches
from cognito_streams.core.values import original_key
from cognito_streams.landing_zone.load import load_landing_zone
from cognito_streams.warehouse.connect import open_warehouse
from tests.integration.test_landing import make_landing
from tests.landing_records import IDENTITY, POOL, change, dumps, put_records, record, seed_records
from tests.support.warehouse import drop_schema, query

pytestmark = pytest.mark.integration

AT = 1_424_801_824_343


def test_bad_ids_are_quarantined_at_landing_and_what_follows_lands_and_loads(stack: Any, aws: Any) -> None:
    # GIVEN, among good records and in small batches: an identityId of 40 three-byte characters (41 characters,
    # within Cognito's 55, but 130 bytes against the warehouse's varchar(64)), a pool that is not configured,
    # an identity of another region than its pool, and a sync whose value and key hold U+0000
    schema = f"ids_{uuid.uuid4().hex[:10]}"
    landing = make_landing(aws, batch_max_records=3, warehouse_schema=schema)
    good = seed_records(7, seed=17)
    euro = dumps(record([change("k", "v", 1, AT)], identity="us-east-1:" + "€" * 40))
    other_pool = dumps(record([change("k", "v", 1, AT)], pool="us-east-1:00000000-0000-0000-0000-000000000000"))
    other_region = dumps(record([change("k", "v", 1, AT)], identity="eu-west-1:" + IDENTITY.split(":")[1]))
    nul = dumps(record([change("level", "1\x002\\3", 5, AT), change("le\x00vel", "x", 5, AT, op="replace")]))
    data = [good[0], euro, *good[1:4], other_pool, other_region, nul, *good[4:]]
    put = put_records(landing.kinesis, landing.stream, data)
    seq = {raw: p["SequenceNumber"] for raw, p in zip(data, put, strict=True)}
    try:
        # WHEN the landing task runs
        (outcome,) = landing.run()
        # THEN the three are quarantined with their reasons, and every other record landed (those after them too)
        rejects = landing.rejects().to_pylist()
        assert {r["sequence_number"]: r["reason"] for r in rejects} == {
            seq[euro]: "invalid_identifier",
            seq[other_pool]: "unknown_identity_pool",
            seq[other_region]: "identity_region_mismatch",
        }
        assert outcome.records_read == len(data) and outcome.records_rejected == 3
        assert outcome.records_landed == len(data) - 3
        changes = landing.changes().to_pylist()
        assert {r["sequence_number"] for r in changes} == {seq[raw] for raw in [*good, nul]}
        # AND the sync holding U+0000 landed whole: its value escaped and flagged, its exact bytes referenced,
        # its key escaped
        rows = {r["record_key"]: r for r in changes if r["sequence_number"] == seq[nul]}
        assert set(rows) == {"level", "le\\0vel"} and original_key("le\\0vel") == "le\x00vel"
        level = rows["level"]
        assert (level["record_value"], level["is_value_cut"], level["value_bytes"]) == ("1\\02\\\\3", True, 5)
        assert landing.get(level["value_ref"]) == b"1\x002\\3"
        # WHEN the loader loads the landing zone (every batch, the ones after the rejects too)
        with open_warehouse(landing.settings) as wh:
            wh.ensure_schema()
        report = load_landing_zone(landing.settings)
        assert report.batches == len(landing.descriptors()) and report.rejects_inserted == 3
        with open_warehouse(landing.settings) as wh:
            # THEN every id in the warehouse fits its column in bytes, as Redshift counts them
            widest = query(
                wh,
                "select max(octet_length(identity_pool_id)), max(octet_length(identity_id)), "
                "max(octet_length(dataset_name)) from {schema}.record_changes",
            )
            assert widest[0][0] <= 64 and widest[0][1] <= 64 and widest[0][2] <= 128
            # AND the stored value decodes to Cognito's exact value (what reconciliation compares)
            ((value, cut, size),) = query(
                wh,
                "select record_value, is_value_cut, value_bytes from {schema}.records where record_key = 'level'",
            )
            stored = WarehouseRecord("game_state", "level", value, 5, level["last_modified_at"], False, cut, size)
            assert value_matches("1\x002\\3", stored) and not value_matches("1\x002\\4", stored)
            assert query(wh, "select count(*) from {schema}.records where record_key = 'le\\0vel'") == [(1,)]
    finally:
        drop_schema(schema)


def test_the_landing_checks_the_pools_of_the_settings(stack: Any, aws: Any) -> None:
    # GIVEN settings whose identity_pool_ids do not hold the records' pool
    landing = make_landing(aws, identity_pool_ids=["us-east-1:11111111-2222-3333-4444-555555555555"])
    put_records(landing.kinesis, landing.stream, seed_records(3, seed=5))
    # WHEN the landing task runs  THEN its records are quarantined as unknown_identity_pool
    (outcome,) = landing.run()
    assert outcome.records_rejected == 3 and dict(outcome.rejected_by_reason) == {"unknown_identity_pool": 3}
    assert {r["identity_pool_id"] for r in landing.rejects().to_pylist()} == {POOL}
