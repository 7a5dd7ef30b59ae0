"""``python -m cognito_streams.core.warm`` (run by ``make venv``, ``make up`` and the Dockerfile) leaves
the decoder's numba parser in its on-disk cache: a fresh process then decodes without compiling
anything, so the ~20-40 s compile never lands on a landing task's first records."""

from __future__ import annotations

import json
import subprocess
import sys

from local.stack import REPO

FRESH_PROCESS = """
import json
from cognito_streams.core import warm
from cognito_streams.core.decode import DecodeOptions, KinesisRecords, decode_records
from tests.landing_records import seed_records

data = seed_records(400, seed=13)
records = KinesisRecords(
    data=data, sequence_numbers=[str(i + 1) for i in range(len(data))], arrived_at_ms=[1_700_000_000_000] * len(data)
)
options = DecodeOptions(
    stream_name="s", shard_id="shardId-000000000000", landed_file="s3://b/x.parquet", value_ref=lambda *_: "s3://b/v"
)
decoded = decode_records(records, options)
print(json.dumps({**warm.cache_stats(), "rows": decoded.changes.num_rows}))
"""


def run(*args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{REPO / 'plugins'}", "HOME": str(REPO)}
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_after_warming_a_fresh_process_decodes_without_compiling() -> None:
    # GIVEN the cache warmed (what make venv / make up / the image build run)
    said = run("-m", "cognito_streams.core.warm")
    assert "numba parser" in said and "cache" in said
    # WHEN a fresh process (a landing task) decodes real-looking records, escapes and non-ASCII included
    stats = json.loads(run("-c", FRESH_PROCESS).strip().splitlines()[-1])
    # THEN every parser function came from the cache: nothing was compiled
    assert stats["rows"] > 0
    assert stats["cache_misses"] == 0, stats
    assert stats["cache_hits"] > 0, stats
