"""A moto server whose Kinesis shards append and read in O(1) per record, for the benchmarks.

moto 5.2.5 keeps a shard's records in a dict and finds the last sequence number with
``list(keys)[-1]`` on every put, and scans the shard from its first record on every GetRecords: both
O(records in the shard). Over a benchmark that writes hundreds of thousands of records, that makes the
fake quadratically slower as the stream grows, which real Kinesis is not. This server replaces those
three functions with lookups that give the same answers (a shard's sequence numbers are consecutive
integers in moto); every other service and call is moto's own.

    python -m bench.fastmoto <port>          # serves 127.0.0.1:<port> until killed
"""

from __future__ import annotations

import sys
import threading
from typing import Any


def _last_key(shard: Any) -> int:
    return next(reversed(shard.records)) if shard.records else 0


def _first_key(shard: Any) -> int:
    return next(iter(shard.records)) if shard.records else 0


def _get_records(shard: Any, last_sequence_id: str, limit: int | None) -> tuple[list[Any], int, int]:
    """moto's ``Shard.get_records`` without the scan: look the next records up by sequence number."""
    position, end = int(last_sequence_id), _last_key(shard)
    results: list[Any] = []
    while position < end and (limit is None or len(results) < limit):
        position += 1
        if position in shard.records:
            results.append(shard.records[position])
    if not results:
        return [], int(last_sequence_id), 0
    behind = shard.records[end].created_at - results[-1].created_at
    return results, results[-1].sequence_number, int(behind * 1000)


def patch() -> None:
    """Patch moto's Kinesis shard in this process."""
    from moto.kinesis import models

    setattr(models.Shard, "get_max_sequence_number", _last_key)  # noqa: B010 - patching moto on purpose
    setattr(models.Shard, "get_min_sequence_number", _first_key)  # noqa: B010
    setattr(models.Shard, "get_records", _get_records)  # noqa: B010


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Run the patched server until the process is killed."""
    from moto.server import ThreadedMotoServer

    patch()
    ThreadedMotoServer(ip_address=host, port=port, verbose=False).start()
    threading.Event().wait()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: python -m bench.fastmoto <port>")
    serve(int(sys.argv[1]))
