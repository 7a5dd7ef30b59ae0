"""KPL aggregates: records starting with the KPL magic are expanded into their user records.

A producer using the Kinesis Producer Library packs several user records into one Kinesis record
(protobuf, with an MD5 digest). Each user record keeps its Kinesis record's sequence number and gets its
sub-sequence number (0, 1, ...); it is then decoded like any record. An aggregate that does not
de-aggregate is rejected whole as ``kpl_bad_aggregate``. Cost: nothing for a chunk without one (one look at
each record's first byte, :meth:`~cognito_streams.core.decode.chunk.Chunk.may_hold_kpl`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import threading

from cognito_streams.core.decode.model import KinesisRecords, Reject

KPL_MAGIC = b"\xf3\x89\x9a\xc2"
_STDERR_LOCK = threading.Lock()


def deaggregate(records: KinesisRecords) -> tuple[KinesisRecords, list[Reject]]:
    """Expand KPL-aggregated records into their user records (sub-sequence numbers 0, 1, ...).

    An aggregate that does not de-aggregate (bad digest, bad protobuf) is rejected as
    ``kpl_bad_aggregate``. Records without the KPL magic prefix pass through unchanged.
    """
    expanded, rejects = deaggregate_in_order(records)
    return expanded, [reject for _, reject in rejects]


def deaggregate_in_order(records: KinesisRecords) -> tuple[KinesisRecords, list[tuple[int, Reject]]]:
    """:func:`deaggregate`, each reject with its place in stream order: the number of user records
    before it."""
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    data: list[bytes] = []
    seqs: list[str] = []
    arrived: list[int] = []
    keys: list[str] = []
    subs: list[int] = []
    rejects: list[tuple[int, Reject]] = []
    partition_keys = records.partition_keys or [""] * len(records)
    given_subs = records.sub_sequence_numbers or [0] * len(records)
    for raw, seq, at, key, sub in zip(
        records.data, records.sequence_numbers, records.arrived_at_ms, partition_keys, given_subs, strict=True
    ):
        if not raw.startswith(KPL_MAGIC):
            data.append(raw)
            seqs.append(seq)
            arrived.append(at)
            keys.append(key)
            subs.append(sub)
            continue
        boto_record = {"Data": raw, "SequenceNumber": seq, "PartitionKey": key, "ApproximateArrivalTimestamp": at}
        # The library prints a dump of the record (values included) to stderr when a sub-record is
        # malformed, then stops; keep that out of the logs and treat it as a bad aggregate.
        errors = io.StringIO()
        # redirect_stderr swaps the process-wide sys.stderr: one thread at a time.
        with _STDERR_LOCK, contextlib.redirect_stderr(errors):
            users = list(iter_deaggregate_records([boto_record], data_format="Boto3"))
        # A record that does not de-aggregate comes back as itself, without the "aggregated" flag.
        not_expanded = not users or not all(u.get("kinesis", {}).get("aggregated") for u in users)
        if errors.getvalue() or not_expanded:
            why = "a sub-record is malformed" if errors.getvalue() else "bad MD5 digest or protobuf message"
            reject = Reject(seq, sub, at, "kpl_bad_aggregate", f"KPL aggregate could not be de-aggregated: {why}", raw)
            rejects.append((len(data), reject))
            continue
        for user in users:
            kinesis = user["kinesis"]
            data.append(base64.b64decode(kinesis["data"]))
            seqs.append(seq)
            arrived.append(at)
            keys.append(kinesis.get("partitionKey") or key)
            subs.append(int(kinesis["subSequenceNumber"]))
    return KinesisRecords(data, seqs, arrived, keys, subs), rejects
