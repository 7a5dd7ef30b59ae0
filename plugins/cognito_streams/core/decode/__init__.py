"""Decode Cognito Streams records (the data of Kinesis records) into the rows of the landing zone's
changes file, quarantining every record that cannot be decoded with the reason.

Pure: no Airflow, no AWS calls. Input is one shard's records in stream order (:class:`KinesisRecords`);
output (:class:`Decoded`) is a pyarrow Table of changes, the rejects with their raw bytes, the ``S3Url``
payloads still to fetch, and the full text of values that had to be cut.

Read in this order:

- :mod:`.rules`: the record format, each rule once: the members read and their types, the limits, the
  checks and their reject reasons, ``S3Url``, dataset deletes, cut values, the shapes of ids. What a
  record becomes is decided there.
- :mod:`.model`: the inputs and outputs (``KinesisRecords``, ``DecodeOptions``, ``Decoded``, ``Reject``).
- :mod:`.rows`: the rules applied to a parsed chunk: rejects in stream order, pending payloads, rows.
- :mod:`.shape`: the exact per-record check (is it UTF-8, JSON, an object, of the types the rules read?).

The speed machinery, each module with what it buys and what it costs: :mod:`.decoder` (chunks and
threads: the entry point), :mod:`.chunk` (the joined chunk and its byte screens), :mod:`.fastparse` (the
schema-specific numba parser), :mod:`.fallback` (the pyarrow reader, its restarts and learned screens),
:mod:`.kpl` (KPL de-aggregation), :mod:`.columns` (numpy over Arrow buffers). None of them decides what
a record becomes: they only find, fast, the records the exact check must see, and give the rules the
same columns the pyarrow reader would (tests/unit/test_fastparse.py, test_decode_properties.py and
test_fuzz_decode.py compare the paths).
"""

from __future__ import annotations

from cognito_streams.core.decode.decoder import DECODE_THREADS, decode_records
from cognito_streams.core.decode.kpl import KPL_MAGIC, deaggregate
from cognito_streams.core.decode.model import (
    CODED_COLUMNS,
    CONSTANT_COLUMNS,
    DECODED_SCHEMA,
    CutValue,
    Decoded,
    DecodeOptions,
    KinesisRecords,
    PendingPayload,
    Reject,
    RowSink,
    empty_changes,
)
from cognito_streams.core.decode.rules import (
    DATASET_PATTERN,
    ID_PATTERN,
    MAX_DATASET_CHARS,
    MAX_DATE_MS,
    MAX_ID_CHARS,
    MAX_KEY_CHARS,
    OPERATIONS,
    PAYLOAD_TYPES,
    READ_SCHEMA,
)

__all__ = [
    "CODED_COLUMNS",
    "CONSTANT_COLUMNS",
    "DATASET_PATTERN",
    "DECODED_SCHEMA",
    "DECODE_THREADS",
    "ID_PATTERN",
    "KPL_MAGIC",
    "MAX_DATASET_CHARS",
    "MAX_DATE_MS",
    "MAX_ID_CHARS",
    "MAX_KEY_CHARS",
    "OPERATIONS",
    "PAYLOAD_TYPES",
    "READ_SCHEMA",
    "CutValue",
    "DecodeOptions",
    "Decoded",
    "KinesisRecords",
    "PendingPayload",
    "Reject",
    "RowSink",
    "deaggregate",
    "decode_records",
    "empty_changes",
]
