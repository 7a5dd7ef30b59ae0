"""Compile the decoder's numba parser ahead of time, so that no landing task pays it.

``core/decode/fastparse.py`` (and the id-shape kernel of ``core/decode/columns.py``) is compiled by
numba on first use (about 20–30 s on a 2-core machine) and the machine code is cached on disk
(``cache=True``): in ``__pycache__`` beside the source when that is writable, else under
``NUMBA_CACHE_DIR`` (in a folder named after the source's directory and a hash of its path, so a
module that moved is compiled again). A worker process that finds the cache loads it in well under a
second. Run this once where the workers' cache lives — ``make venv``/``make up`` do for the
local stack, the Dockerfile does at image build — and the first record of a fresh worker is decoded
at full speed instead of waiting for the compiler:

    python -m cognito_streams.core.warm          # prints what was compiled or loaded, and the time

It decodes a few records that take every path of the parser (escapes, non-ASCII, removes, ``S3Url``,
nulls and ignored members), so that every compiled function is in the cache.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import orjson

POOL = "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"


def sample_records() -> list[bytes]:
    """Records in the Cognito Streams format that exercise every part of the parser."""
    element = {
        "key": "k",
        "value": 'say "hi" \\\\ \u00e9\u20ac \U0001f680 \\n',
        "syncCount": 3,
        "lastModifiedDate": 1_700_000_000_000,
        "deviceLastModifiedDate": 1_700_000_000_001,
        "op": "replace",
    }
    base = {
        "identityPoolId": POOL,
        "identityId": POOL,
        "dataSetName": "ds",
        "operation": "replace",
        "payloadType": "Inline",
        "syncCount": 3,
        "lastModifiedDate": 1_700_000_000_000,
        "kinesisSyncRecords": [element, {**element, "key": "gone", "op": "remove", "value": None}],
        "ignored": {"deep": [1, 2.5, None, True, {"x": "y"}]},
    }
    records = [
        base,
        {**base, "operation": "remove", "kinesisSyncRecords": None},
        {**base, "payloadType": "S3Url", "kinesisSyncRecordsURL": "https://bucket.s3.amazonaws.com/x"},
    ]
    # Escapes written by other JSON encoders (\uXXXX, surrogate pairs) and pretty-printed whitespace.
    escaped = orjson.dumps(base).replace(b'"k"', b'"k\\u0041\\ud83d\\ude80"', 1).replace(b",", b", ")
    return [orjson.dumps(r) for r in records] + [escaped, b'{"not": "a record"}', b"not json"]


def _dispatchers() -> list[Any]:
    from numba.core.registry import CPUDispatcher

    from cognito_streams.core.decode import columns, fastparse

    return [v for module in (fastparse, columns) for v in vars(module).values() if isinstance(v, CPUDispatcher)]


def cache_stats() -> dict[str, int]:
    """Signatures of the parser loaded from the cache (hits) and compiled in this process (misses)."""
    hits = misses = 0
    for dispatcher in _dispatchers():
        hits += sum(dispatcher.stats.cache_hits.values())
        misses += sum(dispatcher.stats.cache_misses.values())
    return {"cache_hits": hits, "cache_misses": misses}


def _value_ref(sequence_number: str, sub_sequence_number: int, index: int) -> str:
    return f"s3://warm/values/{sequence_number}-{sub_sequence_number}-{index}.txt"


def warm() -> dict[str, Any]:
    """Decode the sample records (compiling, or loading from the cache); returns what happened."""
    from cognito_streams.core.decode import DecodeOptions, KinesisRecords, decode_records

    data = sample_records()
    records = KinesisRecords(
        data=data,
        sequence_numbers=[str(i + 1) for i in range(len(data))],
        arrived_at_ms=[1_700_000_000_000] * len(data),
    )
    options = DecodeOptions(
        stream_name="warm", shard_id="shardId-000000000000", landed_file="s3://warm/x.parquet", value_ref=_value_ref
    )
    started = time.perf_counter()
    decode_records(records, options)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR") or "(beside the source, in __pycache__)",
        **cache_stats(),
    }


def main() -> int:
    """Command line: warm the cache and say how long it took."""
    result = warm()
    state = "compiled and cached" if result["cache_misses"] else "already cached"
    print(
        f"numba parser {state} in {result['seconds']} s ({result['cache_misses']} compiled, "
        f"{result['cache_hits']} loaded from the cache; cache: {result['numba_cache_dir']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
