"""Decode a shard's records: chunks of a few MB, two at a time on worker threads, each parsed by the fast
parser (the pyarrow path when it is unsure), checked and turned into rows by the rules.

What it buys: both cores busy on one batch (pyarrow, numpy and the numba parser release the GIL), and the
rows handed to a sink (the landing's Parquet encoder) in stream order while the next chunks decode, so a
batch's file is done shortly after its last chunk instead of after a serial encode. Measured
(docs/performance.md): the full benchmark's 244 MB decode+land at 295 MB/s with 2 % bad records, 172.6 MB
per CPU-second, so the two threads give about 1.7 times one thread. What it costs: the output must not
depend on the threads, so results are taken in chunk order and the rejects of a chunk sorted into stream
order; a batch's chunks share what they learn (:class:`~cognito_streams.core.decode.fallback.BatchState`)
under a lock; and the tail of a batch is cut into ever smaller chunks so that both threads finish together.

Every record read ends in exactly one place: landed (decoded, possibly with zero changes), rejected,
or pending (an ``S3Url`` payload to fetch), so ``read = landed + rejected + pending``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from cognito_streams.core.decode import fallback, fastparse
from cognito_streams.core.decode.chunk import Chunk, screen
from cognito_streams.core.decode.fallback import BatchState, member_screen
from cognito_streams.core.decode.kpl import deaggregate_in_order
from cognito_streams.core.decode.model import Decoded, DecodeOptions, KinesisRecords, Reject, RowSink, empty_changes
from cognito_streams.core.decode.rows import decode_parsed
from cognito_streams.core.decode.rules import READ_SCHEMA

#: Chunks decoded at once on worker threads.
DECODE_THREADS = 2


def decode_records(records: KinesisRecords, options: DecodeOptions, sink: RowSink | None = None) -> Decoded:
    """Decode one shard's records into changes, rejects and pending ``S3Url`` payloads.

    Never raises for bad input: every record is landed, rejected with a reason, or pending.

    ``sink``, when given, is called with each chunk's rows (never an empty table) in stream order,
    as soon as the chunk and every chunk before it are decoded, on the calling thread: while it
    runs, the worker threads decode the next chunks. Concatenated, the tables it received are
    ``Decoded.changes``.
    """
    out = Decoded(changes=empty_changes())
    state = BatchState()
    plan, several = _chunk_plan(records.data, options.chunk_bytes)

    def work(chunk: tuple[int, int, np.ndarray]) -> tuple[pa.Table, Decoded]:
        lo, hi, lengths = chunk
        return _decode_whole_chunk(records.slice(lo, hi), options, state, lengths)

    tables: list[pa.Table] = []

    def take(result: tuple[pa.Table, Decoded]) -> None:
        table, part = result
        out.add(part)
        if table.num_rows:
            tables.append(table)
            if sink is not None:
                sink(table)

    # Each chunk is decoded whole (joined, screened, parsed, checked, turned into rows) on one of two
    # worker threads, so both cores stay busy (pyarrow and numpy release the GIL); results are taken
    # in chunk order, so the output does not depend on which thread finished first. The sink (the
    # Parquet encoder, which releases the GIL too) runs meanwhile on this thread, so that the
    # batch's file is done shortly after its last chunk instead of after a serial encode of all.
    if not options.use_threads or not several:
        for chunk in plan:
            take(work(chunk))
    else:
        with ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="decode") as pool:
            # map submits each chunk as the plan yields it: the first one decodes while this thread
            # reads the lengths of the others.
            for result in pool.map(work, plan):
                take(result)
    if tables:
        out.changes = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return out


def _decode_whole_chunk(
    records: KinesisRecords, options: DecodeOptions, state: BatchState, lengths: np.ndarray | None = None
) -> tuple[pa.Table, Decoded]:
    """One chunk, whole: its rows, and its rejects, pending payloads, cut values and counts.

    1. KPL aggregates are expanded (:mod:`.kpl`), when a record starts like one.
    2. The byte screens (:func:`.chunk.screen`) send suspicious records to the exact check, which blanks
       the bad ones.
    3. The fast parser reads the chunk (:func:`_fast_parse`); when it cannot decide, the pyarrow path
       (:mod:`.fallback`) does, with the member screens the batch has turned on so far.
    4. The rules check the parsed records and make the rows (:func:`.rows.decode_parsed`).
    """
    chunk = Chunk(records.data, lengths)
    part = Decoded(changes=empty_changes())
    kpl_rejects: list[tuple[int, Reject]] = []
    if chunk.may_hold_kpl():
        records, kpl_rejects = deaggregate_in_order(records)
        part.records_read += len(kpl_rejects)
        chunk = Chunk(records.data)
    for index in screen(chunk):
        chunk.check(index)
    table = _fast_parse(chunk, state) if options.fast_parse else None
    if table is None:
        screens = state.screens
        chunk.screened.update(screens)
        for index in member_screen(chunk, screens, 0):
            chunk.check(index)
        table, part.parser_restarts = fallback.parse(chunk, options, state)
    part.records_read += len(records)
    part.records_checked_slowly += chunk.checked
    return decode_parsed(records, chunk, table, options, part, kpl_rejects), part


def _fast_parse(chunk: Chunk, state: BatchState) -> pa.Table | None:
    """The chunk parsed by :func:`fastparse.parse`, or None when the pyarrow path must decide.

    Each record the fast parser flags goes to the exact check. Bad ones are blanked, and the fast
    parser already gave a flagged record the all-null row of a blanked one, so the table stands as it
    is. Records over several lines are compacted or blanked (as the pyarrow path does) and the chunk
    parsed again. A flagged record the check accepts (one the fast parser cannot read exactly like
    pyarrow, say a member name with an escape) sends the whole chunk to the pyarrow path, which reads
    it as before; the records already blanked stay blanked, as that path would have blanked them too.
    """
    for _ in range(2):
        parsed = fastparse.parse(chunk.blob, chunk.starts, chunk.lengths, READ_SCHEMA)
        if parsed is None:
            return None
        table, flagged = parsed
        state.parsed(len(chunk.blob))
        newlines = False
        for index in np.flatnonzero(flagged).tolist():
            if not chunk.newlines_fixed and b"\n" in chunk.data[index]:
                # A record over several lines: the pyarrow path compacts (or blanks) it; so does this.
                newlines = True
            elif index in chunk.errors or chunk.check(index) is None:
                # A blanked record parses unflagged; one flagged anyway, or that the check accepts, is
                # not read here exactly as pyarrow reads it.
                return None
        if not newlines:
            return table
        chunk.fix_newlines()
    return None


def _chunk_plan(data: list[bytes], chunk_bytes: int) -> tuple[Iterator[tuple[int, int, np.ndarray]], bool]:
    """The chunks of :func:`_chunks` with their records' lengths, and whether there are several.

    Reading a record's length is a cache miss on its header (~0.2 µs; 10-14 ms for a 64 MB batch).
    In a batch of at least two chunks, the first chunk is the same whatever the rest (``chunk_bytes``
    from the start), so it is yielded once the lengths of its own records and the next chunk's are
    read, and the rest are read while it decodes.
    """
    n = len(data)
    head: list[np.ndarray] = []
    head_bytes = read = 0
    step = 1024
    while read < n and head_bytes < 2 * chunk_bytes:
        part = np.fromiter(map(len, data[read : read + step]), dtype=np.int64)
        head.append(part)
        head_bytes += int(part.sum()) + len(part)
        read += len(part)
    if read >= n:  # a small batch: every length is known already
        lengths = np.concatenate(head) if head else np.zeros(0, dtype=np.int64)
        chunks = [(lo, hi, lengths[lo:hi]) for lo, hi in _chunks(lengths, chunk_bytes)]
        return iter(chunks), len(chunks) > 1

    def plan() -> Iterator[tuple[int, int, np.ndarray]]:
        known = np.concatenate(head)
        # The lengths read so far cover at least two chunks, so their first chunk is the batch's.
        _, first_hi = next(_chunks(known, chunk_bytes))
        yield 0, first_hi, known[:first_hi]
        rest = np.fromiter(map(len, data[read:]), dtype=np.int64, count=n - read)
        lengths = np.concatenate([known, rest])
        bounds = _chunks(lengths, chunk_bytes)
        if next(bounds) != (0, first_hi):
            raise RuntimeError("decoder invariant broken: the first chunk changed once every length was known")
        for lo, hi in bounds:
            yield lo, hi, lengths[lo:hi]

    return plan(), True


#: The smallest chunk, as a fraction of ``chunk_bytes``: the last ones of a batch get smaller (see ``_chunks``).
TAIL_CHUNK_DIVISOR = 8


def _chunks(lengths: np.ndarray, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    """Bounds of the chunks: ``chunk_bytes`` each, but never more than half of what remains (down to
    ``chunk_bytes / TAIL_CHUNK_DIVISOR``). The worker threads take chunks as they finish, so the
    last one to finish idles for up to one chunk while the other decodes its last: with the tail of
    a batch in ever smaller chunks that is a fraction of a MB instead of a whole chunk. ``lengths``:
    the records' lengths in bytes."""
    n = len(lengths)
    if not n:
        return
    ends = np.cumsum(lengths + 1)
    total = int(ends[-1])
    smallest = max(1, chunk_bytes // TAIL_CHUNK_DIVISOR)
    lo = 0
    while lo < n:
        base = int(ends[lo - 1]) if lo else 0
        size = min(chunk_bytes, max(smallest, (total - base) // DECODE_THREADS))
        if total - base - size < smallest:
            size = total - base  # not a sliver of a chunk at the very end
        hi = int(np.searchsorted(ends, base + size, side="left")) + 1
        hi = min(max(hi, lo + 1), n)
        yield lo, hi
        lo = hi
