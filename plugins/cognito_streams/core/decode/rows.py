"""What a parsed chunk becomes: the checks of :mod:`~cognito_streams.core.decode.rules` applied, then the
rejects (in stream order), the pending ``S3Url`` payloads and the change rows, as the rules say.

The rows are built from the parsed columns' buffers: the record-level text every row of a record repeats
(ids, dataset name, payload type) and the keys are dictionary codes (4 bytes a row) into dictionaries
encoded once per chunk, so the Parquet encoder writes those dictionaries instead of hashing every row's
text; a removed key's value is the same text buffer under a validity bitmap without it. Values are
searched for U+0000 only in a chunk whose text holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cognito_streams.core.decode import columns as col
from cognito_streams.core.decode import shape
from cognito_streams.core.decode.chunk import Chunk
from cognito_streams.core.decode.columns import Codes, coded
from cognito_streams.core.decode.model import (
    DECODED_SCHEMA,
    CutValue,
    Decoded,
    DecodeOptions,
    KinesisRecords,
    PendingPayload,
    Reject,
    empty_changes,
)
from cognito_streams.core.decode.rules import (
    ITEM_CHECKS,
    RECORD_CHECKS,
    ParsedItems,
    ParsedRecords,
    Verdicts,
    check_records,
    is_dataset_delete,
    is_pending,
    item_detail,
)
from cognito_streams.core.landing_format import (
    OP_DATASET_REMOVE,
    OP_REMOVE,
    OP_REPLACE,
    PAYLOAD_INLINE,
    PAYLOAD_S3URL,
    TIMESTAMP_TYPE,
)
from cognito_streams.core.values import ESCAPED_NUL, stored_key, stored_value

_TS = TIMESTAMP_TYPE
#: Cognito's dates are epoch milliseconds; the landing contract's timestamps are microseconds.
_US_PER_MS = 1000


def decode_parsed(
    records: KinesisRecords,
    chunk: Chunk,
    table: pa.Table,
    options: DecodeOptions,
    out: Decoded,
    early: list[tuple[int, Reject]] | None = None,
) -> pa.Table:
    """Checks and rows for one parsed chunk (``table``: one row per record of ``chunk``, the blanked ones
    all null). Rejects, pending payloads, cut values and counts go to ``out``; the rows are returned.
    ``early`` are rejects made before the records were parsed (bad KPL aggregates), each with the number
    of records before it: they join the chunk's rejects in stream order."""
    n = chunk.n
    subs = records.sub_sequence_numbers if records.sub_sequence_numbers is not None else [0] * n
    blank = np.zeros(n, dtype=bool)
    if chunk.errors:
        blank[list(chunk.errors)] = True

    parsed = ParsedRecords(table, options.identity_pool_ids, options.resolved_s3url)
    items = ParsedItems(parsed.items)
    verdicts = check_records(parsed, items, blank)
    rejected = blank | verdicts.rejected_by_checks()
    if rejected.any() or early:
        out.rejects.extend(_rejects(records, subs, chunk, parsed, verdicts, early or []))

    ok = ~rejected
    pending = ok & is_pending(parsed)
    if pending.any():
        out.pending.extend(_pending(records, subs, chunk, parsed, np.flatnonzero(pending)))
    landed = ok & ~pending
    out.records_landed += int(landed.sum())

    # JSON text holds U+0000 only as the escape \u0000 (or, invalid, as a raw NUL byte): without either in
    # the chunk, no parsed string holds it, and the searches for it in the keys and values are saved.
    nul = b"\x00" in chunk.blob or chunk.contains(r"\\u0000")
    n_subs = np.asarray(subs, dtype=np.int64) if records.sub_sequence_numbers is not None else np.zeros(n, np.int64)
    context = _RowContext(
        options=options,
        seqs=pa.array(records.sequence_numbers, pa.string()),
        subs=n_subs,
        arrived=np.asarray(records.arrived_at_ms, dtype=np.int64),
        # Rows are taken from landed records only, where these are never null (null is rejected above).
        pool=parsed.pool_codes,
        identity=parsed.identity_codes,
        dataset=parsed.dataset_codes,
        payload=parsed.is_s3url.astype(np.int32),
        event_sync=col.int64s(parsed.event_sync),
        event_date=col.int64s(parsed.event_date),
        keys=Codes.encoded(_stored_keys(items.keys, nul)),
        nul=nul,
    )
    parts: list[pa.Table] = []
    if items.m:
        parts.append(_item_rows(context, items, landed[items.parents], out))
    removes = landed & is_dataset_delete(parsed, items)
    if removes.any():
        parts.append(_dataset_remove_rows(context, np.flatnonzero(removes)))
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return empty_changes()
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def _rejects(
    records: KinesisRecords,
    subs: list[int],
    chunk: Chunk,
    parsed: ParsedRecords,
    verdicts: Verdicts,
    early: list[tuple[int, Reject]],
) -> list[Reject]:
    """The chunk's rejects in stream order, whichever check found them (however the batch was cut into
    chunks); a reject made before record i (an aggregate that did not expand) sorts just before it."""
    seqs, arrived = records.sequence_numbers, records.arrived_at_ms
    found: list[tuple[float, Reject]] = [(before - 0.5, reject) for before, reject in early]
    by_checks = np.flatnonzero(verdicts.rejected_by_checks())
    id_cols = col.pylists(by_checks, parsed.pool, parsed.identity, parsed.dataset)
    for j, index in enumerate(by_checks.tolist()):
        if verdicts.reason[index] >= 0:
            check = RECORD_CHECKS[verdicts.reason[index]]
            detail = check.detail
        else:
            check = ITEM_CHECKS[verdicts.item_reason[index]]
            detail = item_detail(check, int(verdicts.item_where[index]))
        reject = Reject(
            seqs[index], subs[index], arrived[index], check.reason, detail, chunk.data[index], *(c[j] for c in id_cols)
        )
        found.append((index, reject))
    for index, error in chunk.errors.items():
        ids = (
            shape.identities(chunk.data[index])
            if error.identity_id is None and not error.ids_read
            else {
                "identity_pool_id": error.identity_pool_id,
                "identity_id": error.identity_id,
                "dataset_name": error.dataset_name,
            }
        )
        reject = Reject(seqs[index], subs[index], arrived[index], error.reason, error.detail, chunk.data[index], **ids)
        found.append((index, reject))
    found.sort(key=lambda pair: pair[0])
    return [reject for _, reject in found]


def _pending(
    records: KinesisRecords, subs: list[int], chunk: Chunk, parsed: ParsedRecords, where: np.ndarray
) -> list[PendingPayload]:
    urls, pools, idents, datasets = col.pylists(where, parsed.url, parsed.pool, parsed.identity, parsed.dataset)
    return [
        PendingPayload(
            records.sequence_numbers[index],
            subs[index],
            records.arrived_at_ms[index],
            str(urls[j]),
            chunk.data[index],
            pools[j],
            idents[j],
            datasets[j],
        )
        for j, index in enumerate(where.tolist())
    ]


def _stored_keys(keys: pa.DictionaryArray, nul: bool) -> pa.DictionaryArray:
    """``keys`` with each key in its stored form (:func:`cognito_streams.core.values.stored_key`: escaped
    when it holds U+0000 or the text ``\\0``), decided once per distinct key."""
    dictionary = keys.dictionary
    odd = col.as_numpy(pc.match_substring(dictionary, ESCAPED_NUL))
    if nul:
        odd |= col.has_nul(dictionary)
    if not odd.any():
        return keys
    texts = dictionary.to_pylist()
    for i in np.flatnonzero(odd).tolist():
        texts[i] = stored_key(texts[i])
    return pa.DictionaryArray.from_arrays(keys.indices, pa.array(texts, pa.string()))


#: The dictionaries of ``op`` and ``payload_type``: the same in every chunk, so that the rows of two
#: chunks compare equal and the encoder keeps one dictionary per row group.
_OP_DICTIONARY = pa.array([OP_REPLACE, OP_REMOVE, OP_DATASET_REMOVE], pa.string())
_PAYLOAD_DICTIONARY = pa.array([PAYLOAD_INLINE, PAYLOAD_S3URL], pa.string())


@dataclass
class _RowContext:
    """What the rows of a chunk take from its records."""

    options: DecodeOptions
    seqs: pa.Array
    subs: np.ndarray
    arrived: np.ndarray
    pool: Codes
    identity: Codes
    dataset: Codes
    #: 1 for an S3Url record, else 0 (codes into _PAYLOAD_DICTIONARY)
    payload: np.ndarray
    event_sync: np.ndarray
    event_date: np.ndarray
    #: The elements' keys (``kinesisSyncRecords[].key``, flattened), in their stored form
    keys: Codes
    #: The chunk may hold U+0000 in its text (else no value is searched for it)
    nul: bool

    def record_columns(self, where: np.ndarray) -> dict[str, pa.Array]:
        """The columns every row of record ``where`` repeats from it."""
        taken = pa.array(where, pa.int64())
        return {
            "identity_pool_id": self.pool.rows(where),
            "identity_id": self.identity.rows(where),
            "dataset_name": self.dataset.rows(where),
            "event_sync_count": pa.array(self.event_sync[where]),
            "event_last_modified_at": _ts_of(self.event_date[where]),
            "payload_type": coded(self.payload[where], _PAYLOAD_DICTIONARY),
            "sequence_number": self.seqs.take(taken),
            "sub_sequence_number": pa.array(self.subs[where]),
            "arrived_at": _ts_of(self.arrived[where]),
        }


def _ts(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Epoch milliseconds (int64, nulls kept) as the contract's UTC microsecond timestamps. Only for dates
    checked to lie in 1970-9999 (``_bad_date``): their microseconds fit in 64 bits."""
    return pc.multiply(col.one_array(values), _US_PER_MS).view(_TS)


def _ts_of(epoch_ms: np.ndarray) -> pa.Array:
    """Epoch milliseconds (int64, no nulls) as the contract's UTC microsecond timestamps."""
    return pa.Array.from_buffers(_TS, len(epoch_ms), [None, pa.py_buffer(epoch_ms * _US_PER_MS)])


def _repeat(value: str, n: int) -> pa.Array:
    """``n`` times ``value``, dictionary-encoded: 4 bytes a row instead of a copy of the text (the
    Parquet file stores these columns as strings; see ``landing.writer.parquet_bytes``)."""
    return coded(np.zeros(n, dtype=np.int32), pa.array([value], pa.string()))


def _item_rows(ctx: _RowContext, items: ParsedItems, keep: np.ndarray, out: Decoded) -> pa.Table:
    """One row per element ``keep`` selects (the elements of landed records)."""
    options = ctx.options
    parents, positions = items.parents, items.positions
    flat = col.one_array(items.flat)
    is_remove = col.equals(pc.struct_field(flat, "op"), OP_REMOVE)
    value = pc.struct_field(flat, "value")
    sync = pc.struct_field(flat, "syncCount")
    date = pc.struct_field(flat, "lastModifiedDate")
    device = pc.struct_field(flat, "deviceLastModifiedDate")
    if keep.all():
        elements = np.arange(len(keep))
    else:
        # Only the fields the rows copy are filtered (key and op become codes): the struct's other
        # children and validity are left alone.
        elements = np.flatnonzero(keep)
        mask = pa.array(keep)
        value, sync, date, device = (pc.filter(field, mask) for field in (value, sync, date, device))
        parents, positions, is_remove = parents[keep], positions[keep], is_remove[keep]
    m = len(parents)
    if m == 0:
        return empty_changes()
    # A removed key's value is null: the same text buffers under a validity bitmap without it (a copy of
    # every value by if_else cost more).
    value = col.one_array(value)
    if value.offset:
        value = pa.concat_arrays([value])  # its offsets then start at row 0
    valid = col.validity(value) & ~is_remove
    offsets = np.frombuffer(value.buffers()[1], dtype=np.int32, count=m + 1)
    sizes = np.diff(offsets).astype(np.int64)
    bitmap = col.bitmap(valid)
    value = pa.Array.from_buffers(pa.string(), m, [bitmap, *value.buffers()[1:]])
    value_bytes = pa.Array.from_buffers(pa.int64(), m, [bitmap, pa.py_buffer(sizes)])
    # Flagged: cut (too long) or escaped (holds U+0000, which no warehouse text can): core/values.py.
    cut = valid & (sizes > options.value_max_bytes)
    if ctx.nul:
        cut |= valid & col.has_nul(value)
    value_ref = pa.nulls(m, pa.string())
    if cut.any():
        value, value_ref = _cut_values(ctx, value, cut, parents, positions, out)
    columns = {
        **ctx.record_columns(parents),
        "record_key": ctx.keys.rows(elements),
        "op": coded(is_remove.view(np.int8), _OP_DICTIONARY),
        "record_value": value,
        "value_bytes": value_bytes,
        "is_value_cut": pa.array(cut),
        "value_ref": value_ref,
        "sync_count": sync,
        "last_modified_at": _ts(date),
        "device_last_modified_at": _ts(device),
        "stream_name": _repeat(options.stream_name, m),
        "shard_id": _repeat(options.shard_id, m),
        "record_index": pa.array(positions.astype(np.int32)),
        "landed_file": _repeat(options.landed_file, m),
    }
    return _table(columns)


def _cut_values(
    ctx: _RowContext,
    value: pa.Array,
    cut: np.ndarray,
    parents: np.ndarray,
    positions: np.ndarray,
    out: Decoded,
) -> tuple[pa.Array, pa.Array]:
    options = ctx.options
    rows = np.flatnonzero(cut)
    full = pc.take(value, pa.array(rows)).to_pylist()
    refs: list[str | None] = [None] * len(value)
    cut_texts: list[str] = []
    for row, text in zip(rows.tolist(), full, strict=True):
        parent = int(parents[row])
        ref = options.value_ref(ctx.seqs[parent].as_py(), int(ctx.subs[parent]), int(positions[row]))
        refs[row] = ref
        out.cut_values.append(CutValue(ref, text.encode("utf-8")))
        cut_texts.append(stored_value(text, options.value_max_bytes).text)
    value = pc.replace_with_mask(value, pa.array(cut), pa.array(cut_texts, pa.string()))
    return value, pa.array(refs, pa.string())


def _dataset_remove_rows(ctx: _RowContext, where: np.ndarray) -> pa.Table:
    options = ctx.options
    m = len(where)
    record = ctx.record_columns(where)
    columns = {
        **record,
        "record_key": pa.DictionaryArray.from_arrays(pa.nulls(m, pa.int32()), ctx.keys.dictionary),
        "op": coded(np.full(m, 2, dtype=np.int32), _OP_DICTIONARY),
        "record_value": pa.nulls(m, pa.string()),
        "value_bytes": pa.nulls(m, pa.int64()),
        "is_value_cut": pa.array(np.zeros(m, dtype=bool)),
        "value_ref": pa.nulls(m, pa.string()),
        "sync_count": record["event_sync_count"],
        "last_modified_at": record["event_last_modified_at"],
        "device_last_modified_at": pa.nulls(m, _TS),
        "stream_name": _repeat(options.stream_name, m),
        "shard_id": _repeat(options.shard_id, m),
        "record_index": pa.array(np.zeros(m, dtype=np.int32)),
        "landed_file": _repeat(options.landed_file, m),
    }
    return _table(columns)


def _table(columns: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    arrays = []
    for schema_field in DECODED_SCHEMA:
        column = columns[schema_field.name]
        if isinstance(column, pa.Array):
            column = pa.chunked_array([column])
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=DECODED_SCHEMA)
