"""The record format: what the decoder makes of one Cognito Streams record. Each rule is stated here once.

A Kinesis record's data (a KPL user record, when aggregated) is one sync of one dataset: a JSON object.
Of it the decoder reads the members in :data:`TOP_FIELDS` (and :data:`ITEM_FIELDS` of each element of
``kinesisSyncRecords``); every other member is ignored, whatever it holds. A member that is null counts as
absent. Each record ends in exactly one place, so ``read = landed + rejected + pending``:

- **rejected** (quarantined with its raw bytes, its Kinesis coordinates and a reason of
  ``landing_format.REJECT_REASONS``) when
  1. its bytes are not one JSON object whose members read have the JSON types below, members read not
     repeated (the exact check, :mod:`~cognito_streams.core.decode.shape`: ``invalid_utf8``,
     ``invalid_json``, ``not_an_object``, ``duplicate_keys``, ``bad_field_type``); else
  2. one of :data:`RECORD_CHECKS` fails (the first that fails names the reason and detail); else
  3. one of :data:`ITEM_CHECKS` fails for an element: a sync is all or nothing, so the whole record is
     rejected, named by its first bad element (``kinesisSyncRecords[2].op is not replace or remove``);
  4. a KPL aggregate that does not de-aggregate is rejected whole (``kpl_bad_aggregate``).
- **pending** when its ``payloadType`` is ``S3Url``: its elements are behind ``kinesisSyncRecordsURL``, a
  presigned URL. The landing fetches them (landing/payloads.py, core/s3url.py: the URL rules and the
  ``s3url_*`` reasons) and decodes the record again with them in ``kinesisSyncRecords``
  (``DecodeOptions.resolved_s3url``), exactly as an ``Inline`` record; its rows keep ``payload_type``
  ``S3Url``. ``payloadType`` decides, never the size.
- **landed**, as change rows (``landing_format.CHANGES_SCHEMA``; the rows: :mod:`.rows`):
  - one row per element of ``kinesisSyncRecords``: ``op`` ``replace`` sets the key's value, ``remove``
    deletes the key (its value, if any, is dropped: the row's value is null);
  - for ``operation: remove`` with no element (an empty or absent list), one ``dataset_remove`` row: the
    dataset was deleted at the record's ``lastModifiedDate``, with its ``syncCount``;
  - nothing for ``operation: replace`` with an empty list (a sync that changed nothing: landed, no row);
  - a value the warehouse cannot hold as it is, longer than ``value_max_bytes`` bytes (Redshift's VARCHAR
    counts bytes) or holding U+0000, is stored *cut* (at a character boundary) or *escaped*, flagged
    ``is_value_cut``, and its exact text is kept at ``value_ref`` (a :class:`~.model.CutValue`); a key
    holding U+0000 or the text ``\\0`` is stored escaped (:mod:`cognito_streams.core.values`, the rules of
    both; docs/semantics.md).

Dates are epoch milliseconds (UTC); the rows' timestamps are microseconds. Ids, dataset names and keys go
to the warehouse as they are: the shapes below keep them within its columns' widths in bytes.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cognito_streams.core.decode import columns as col
from cognito_streams.core.decode.columns import Codes, Column, shaped
from cognito_streams.core.landing_format import OP_REMOVE, OP_REPLACE, PAYLOAD_INLINE, PAYLOAD_S3URL

# -- the members read, and their JSON types ---------------------------------------------------------

#: Top-level members read as strings (JSON strings only).
TOP_STRING_FIELDS = (
    "identityPoolId",
    "identityId",
    "dataSetName",
    "datasetName",  # the other spelling of dataSetName: either is accepted (see dataset_names)
    "operation",
    "payloadType",
    "kinesisSyncRecordsURL",
)
#: Top-level members read as integers (JSON integers within the signed 64-bit range).
TOP_INT_FIELDS = ("syncCount", "lastModifiedDate")
#: The array of changes (JSON array of objects or nulls).
RECORDS_FIELD = "kinesisSyncRecords"
TOP_FIELDS = (*TOP_STRING_FIELDS, *TOP_INT_FIELDS, RECORDS_FIELD)

#: Members read of each element of ``kinesisSyncRecords``.
ITEM_STRING_FIELDS = ("key", "value", "op")
ITEM_INT_FIELDS = ("syncCount", "lastModifiedDate", "deviceLastModifiedDate")
ITEM_FIELDS = (*ITEM_STRING_FIELDS, *ITEM_INT_FIELDS)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

#: One element of ``kinesisSyncRecords`` as read.
ITEM_TYPE = pa.struct(
    [
        *(pa.field(name, pa.string()) for name in ITEM_STRING_FIELDS),
        *(pa.field(name, pa.int64()) for name in ITEM_INT_FIELDS),
    ]
)
#: What the parsers read of a record (the fast parser and the pyarrow reader alike): the types above.
READ_SCHEMA = pa.schema(
    [
        *(pa.field(name, pa.string()) for name in TOP_STRING_FIELDS),
        *(pa.field(name, pa.int64()) for name in TOP_INT_FIELDS),
        pa.field(RECORDS_FIELD, pa.list_(ITEM_TYPE)),
    ]
)

# -- values and limits -------------------------------------------------------------------------------

#: ``payloadType`` of a Cognito Streams record (``snapshot`` rows come from cognito_snapshot, not from here).
PAYLOAD_TYPES = (PAYLOAD_INLINE, PAYLOAD_S3URL)
#: ``operation`` of a record and ``op`` of an element.
OPERATIONS = (OP_REPLACE, OP_REMOVE)
#: Largest epoch-millisecond date accepted (9999-12-31T23:59:59.999Z); Redshift TIMESTAMP and Parquet hold it.
MAX_DATE_MS = 253_402_300_799_999
#: Cognito's limit on a record key. 1,024 characters take at most 4,096 UTF-8 bytes, the width of
#: ``record_key``, escaped or not (core/values.py: an escape doubles a one-byte character).
MAX_KEY_CHARS = 1024
#: Redshift's VARCHAR holds 65,535 bytes: a longer value is cut (the settings' ``value_max_bytes``).
VALUE_MAX_BYTES = 65_535

# -- shapes of ids -----------------------------------------------------------------------------------

# Since version 2 of the landing contract (docs/landing.md, "Versions of the landing contract"; version 3
# checks the same): ids and dataset names must have Cognito's shapes (invalid_identifier), the pool must
# be one of the configured identity_pool_ids (unknown_identity_pool), and the identity id must name its
# pool's region (identity_region_mismatch). Version 1 counted characters only and landed any pool.

#: Cognito Sync's documented shapes (API reference: IdentityPoolId, IdentityId, DatasetName). Their
#: ``\w`` is Java's, ASCII only: spelled out, since RE2's and Python's ``\w`` take any letter (40
#: three-byte letters would pass, and fail Redshift's COPY into varchar(64) with 120 bytes). Matching
#: text is ASCII, so its length in characters is its width in bytes in the warehouse.
ID_PATTERN = "^[A-Za-z0-9_-]+:[0-9a-f-]+$"
DATASET_PATTERN = "^[A-Za-z0-9_.:-]+$"
MAX_ID_CHARS = 55
MAX_DATASET_CHARS = 128
_WORD = string.ascii_letters + string.digits + "_"


def _byte_table(allowed: str) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[list(allowed.encode())] = True
    return table


#: The patterns as tables of the bytes allowed: an id is region ``:`` rest, a dataset name one part.
_ID_REGION_BYTES = _byte_table(_WORD + "-")
_ID_REST_BYTES = _byte_table("0123456789abcdef-")
_DATASET_BYTES = _byte_table(_WORD + ".:-")
_ID_SHAPE = "(Cognito's shape: [A-Za-z0-9_-]+:[0-9a-f-]+, at most 55 characters)"


def id_shaped(strings: pa.Array) -> np.ndarray:
    """Which of ``strings`` (no nulls) match ID_PATTERN and are at most MAX_ID_CHARS long."""
    return shaped(strings, _ID_REGION_BYTES, _ID_REST_BYTES, ord(":"), MAX_ID_CHARS)


def dataset_shaped(strings: pa.Array) -> np.ndarray:
    """Which of ``strings`` (no nulls) match DATASET_PATTERN and are at most MAX_DATASET_CHARS long."""
    return shaped(strings, _DATASET_BYTES, _DATASET_BYTES, -1, MAX_DATASET_CHARS)


def region_of(identity_pool_id: str) -> str:
    """The region an identity pool id (or identity id) names: what comes before its ``:``."""
    return identity_pool_id.split(":", 1)[0]


# -- the checks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One check: the records (or elements) for which ``failed`` is True are rejected with ``reason``."""

    reason: str
    detail: str
    failed: Callable[..., np.ndarray]


def dataset_names(spelled: Column, other: Column) -> tuple[Column, np.ndarray]:
    """Each record's dataset name (``dataSetName``, else ``datasetName``), and which records give both
    spellings with different values.

    ``datasetName`` (the other spelling) is usually absent from a whole chunk: then the dataset is
    ``dataSetName`` as parsed, and nothing conflicts. When a few records carry it (a bad record among
    thousands), only those are compared: kernels over every record (a ``coalesce`` copies all the
    names, and its result dictionary-encodes slower) cost 0.2 ms per 4 MB chunk, a take of the few
    0.05 ms.
    """
    n = len(spelled)
    conflict = np.zeros(n, dtype=bool)
    if other.null_count == n:
        return spelled, conflict
    given = np.flatnonzero(~col.is_null(other))
    taken = pa.array(given, pa.int64())
    a, b = col.one_array(spelled).take(taken), col.one_array(other).take(taken)
    conflict[given] = col.as_numpy(pc.fill_null(pc.not_equal(a, b), False))
    # The coalesce differs from dataSetName only where that is null and datasetName is not.
    if a.null_count:
        return pc.coalesce(spelled, other), conflict
    return spelled, conflict


@dataclass
class ParsedRecords:
    """The members read of a chunk's records (one entry per record, a blanked record all null), as the
    record checks and the rows see them."""

    table: pa.Table
    #: The settings' ``identity_pool_ids`` (None: any pool).
    configured_pools: tuple[str, ...] | None
    #: The records are S3Url records whose fetched elements were put in ``kinesisSyncRecords``.
    resolved_s3url: bool

    def __post_init__(self) -> None:
        column = self.table.column
        self.n = self.table.num_rows
        self.pool = column("identityPoolId")
        self.identity = column("identityId")
        self.dataset, self.dataset_conflict = dataset_names(column("dataSetName"), column("datasetName"))
        self.operation = column("operation")
        self.payload = column("payloadType")
        self.event_sync = column("syncCount")
        self.event_date = column("lastModifiedDate")
        self.url = column("kinesisSyncRecordsURL")
        self.items = column(RECORDS_FIELD)
        self.is_s3url = col.equals(self.payload, PAYLOAD_S3URL)
        #: Records whose elements are in ``kinesisSyncRecords``: Inline ones, and S3Url ones once resolved.
        self.inline_like = ~self.is_s3url if not self.resolved_s3url else np.ones(self.n, dtype=bool)
        self.is_remove = col.equals(self.operation, OP_REMOVE)
        # The rows carry these as codes into a dictionary per chunk; the identifier checks read them there.
        self.pool_codes, self.identity_codes = Codes.of(self.pool), Codes.of(self.identity)
        self.dataset_codes = Codes.of(self.dataset)

    @cached_property
    def identifiers(self) -> list[np.ndarray]:
        """The masks of the identifier checks, in RECORD_CHECKS order: pool id, identity id and dataset
        name not of Cognito's shape; pool not configured (never, when no pools are configured); identity
        id of another region than its pool. Each is decided once per distinct value (the chunk's
        dictionaries)."""
        pool, identity = self.pool_codes, self.identity_codes
        pools, identities = pool.dictionary, identity.dictionary
        pool_shaped = id_shaped(pools)
        pool_ok = pool_shaped.copy()
        if self.configured_pools is not None:
            pool_ok &= col.as_numpy(pc.is_in(pools, value_set=pa.array(self.configured_pools, pa.string())))
        # One pass over the identities per region of a pool that passed the checks before (the configured
        # ones: a few), records of other pools being rejected anyway.
        same_region = np.zeros(len(pool.codes), dtype=bool)
        by_region: dict[str, list[int]] = {}
        for j in np.flatnonzero(pool_ok).tolist():
            by_region.setdefault(region_of(str(pools[j].as_py())), []).append(j)
        for region, entries in by_region.items():
            of_region = np.zeros(len(pools), dtype=bool)
            of_region[entries] = True
            prefixed = col.as_numpy(pc.starts_with(identities, region + ":"))
            same_region |= pool.per_record(of_region) & identity.per_record(prefixed)
        return [
            ~pool.per_record(pool_shaped),
            ~identity.per_record(id_shaped(identities)),
            ~self.dataset_codes.per_record(dataset_shaped(self.dataset_codes.dictionary)),
            ~pool.per_record(pool_ok),
            ~same_region,
        ]


def is_pending(records: ParsedRecords) -> np.ndarray:
    """``S3Url`` records whose elements are still behind their URL (not yet resolved): pending, if not rejected."""
    return records.is_s3url & ~records.inline_like


def is_dataset_delete(records: ParsedRecords, items: ParsedItems) -> np.ndarray:
    """``operation: remove`` with no element: the dataset was deleted (one ``dataset_remove`` row), if landed."""
    return records.is_remove & (items.lengths == 0)


#: The record-level checks, in the order they are applied (the first that fails names the reason).
RECORD_CHECKS: tuple[Check, ...] = (
    Check("duplicate_keys", "dataSetName and datasetName are both given and differ", lambda r: r.dataset_conflict),
    Check("missing_field", "identityPoolId is missing or empty", lambda r: col.missing_text(r.pool)),
    Check("missing_field", "identityId is missing or empty", lambda r: col.missing_text(r.identity)),
    Check("missing_field", "dataSetName (or datasetName) is missing or empty", lambda r: col.missing_text(r.dataset)),
    Check("missing_field", "operation is missing", lambda r: col.is_null(r.operation)),
    Check("unknown_op", "operation is not replace or remove", lambda r: col.not_in(r.operation, OPERATIONS)),
    Check("missing_field", "payloadType is missing", lambda r: col.is_null(r.payload)),
    Check("unknown_payload_type", "payloadType is not Inline or S3Url", lambda r: col.not_in(r.payload, PAYLOAD_TYPES)),
    Check("missing_field", "syncCount is missing", lambda r: col.is_null(r.event_sync)),
    Check("bad_field_type", "syncCount is negative", lambda r: col.negative(r.event_sync)),
    Check("missing_field", "lastModifiedDate is missing", lambda r: col.is_null(r.event_date)),
    Check(
        "bad_field_type",
        "lastModifiedDate is not an epoch-millisecond date between 1970 and 9999",
        lambda r: col.outside(r.event_date, 0, MAX_DATE_MS),
    ),
    Check(
        "missing_field",
        "kinesisSyncRecordsURL is missing or empty (payloadType S3Url)",
        lambda r: is_pending(r) & col.missing_text(r.url),
    ),
    Check(
        "missing_field",
        "kinesisSyncRecords is missing (operation replace)",
        lambda r: r.inline_like & col.is_null(r.items) & ~r.is_remove,
    ),
    Check("invalid_identifier", f"identityPoolId is not an identity pool id {_ID_SHAPE}", lambda r: r.identifiers[0]),
    Check("invalid_identifier", f"identityId is not an identity id {_ID_SHAPE}", lambda r: r.identifiers[1]),
    Check(
        "invalid_identifier",
        f"the dataset name is not a dataset name (Cognito's shape: [A-Za-z0-9_.:-]+, at most {MAX_DATASET_CHARS} "
        "characters)",
        lambda r: r.identifiers[2],
    ),
    Check(
        "unknown_identity_pool",
        "identityPoolId is not one of the configured identity_pool_ids",
        lambda r: r.identifiers[3],
    ),
    Check(
        "identity_region_mismatch",
        "the region of identityId (before ':') is not its identityPoolId's region",
        lambda r: r.identifiers[4],
    ),
)


#: Records with up to this many elements are checked for repeated keys by comparing shifted
#: columns (cheap); larger ones through a hash of (record, key).
PAIRWISE_MAX_ITEMS = 8


def repeated_keys(parents: np.ndarray, lengths: np.ndarray, keys: pa.DictionaryArray) -> np.ndarray:
    """Elements whose key already appeared in an earlier element of the same record (``keys``: the
    elements' keys, dictionary-encoded; ``parents``: each element's record; ``lengths``: each record's
    number of elements)."""
    m = len(parents)
    repeated = np.zeros(m, dtype=bool)
    # Equal keys have equal dictionary codes (-1: no key): one hashing pass, then integer comparisons
    # (half the time of comparing the strings shift by shift).
    codes = col.as_numpy(pc.fill_null(keys.indices, -1)).astype(np.int64)
    longest = int(lengths.max(initial=0))
    # Element i and element i + d belong to the same record only if the record has > d elements.
    for d in range(1, min(longest, PAIRWISE_MAX_ITEMS)):
        same_record = parents[d:] == parents[:-d]
        if not same_record.any():
            break
        repeated[d:] |= same_record & (codes[d:] == codes[:-d]) & (codes[d:] >= 0)
    big = lengths[parents] > PAIRWISE_MAX_ITEMS
    if big.any():
        where = np.flatnonzero(big)
        big_codes = codes[where]
        composite = parents[where] * (int(big_codes.max(initial=0)) + 2) + (big_codes + 1)
        composite = np.where(big_codes >= 0, composite, -1 - np.arange(len(big_codes)))
        _, first = np.unique(composite, return_index=True)
        later = np.ones(len(where), dtype=bool)
        later[first] = False
        repeated[where[later]] = True
    return repeated


@dataclass
class ParsedItems:
    """The elements of ``kinesisSyncRecords`` of a chunk's records, flattened (one entry per element)."""

    items: Column

    def __post_init__(self) -> None:
        items = self.items
        self.flat = pc.list_flatten(items)
        #: Each element's record, and its position in the record's list.
        self.parents = col.as_numpy(pc.list_parent_indices(items)).astype(np.int64, copy=False)
        #: Each record's number of elements (0 for a null list).
        self.lengths = col.as_numpy(pc.fill_null(pc.list_value_length(items), 0)).astype(np.int64, copy=False)
        first_item = np.cumsum(self.lengths) - self.lengths
        self.positions = np.arange(len(self.parents), dtype=np.int64) - first_item[self.parents]
        self.m = len(self.parents)
        if self.m:
            field = pc.struct_field
            self.key = field(self.flat, "key")
            # One hashing pass over the keys serves the repeated-key check and the rows' record_key (codes
            # into it: the Parquet encoder then writes this dictionary instead of hashing the keys again).
            self.keys = pc.dictionary_encode(col.one_array(self.key))
            self.op = field(self.flat, "op")
            self.sync = field(self.flat, "syncCount")
            self.date = field(self.flat, "lastModifiedDate")
            self.device = field(self.flat, "deviceLastModifiedDate")
        else:
            self.keys = pc.dictionary_encode(pa.array([], pa.string()))


#: The element-level checks, in order; the detail is prefixed with ``kinesisSyncRecords[i]``.
ITEM_CHECKS: tuple[Check, ...] = (
    Check("missing_field", "is null", lambda e: col.is_null(e.flat)),
    Check("missing_field", ".key is missing or empty", lambda e: col.missing_text(e.key)),
    Check("missing_field", ".op is missing", lambda e: col.is_null(e.op)),
    Check("unknown_op", ".op is not replace or remove", lambda e: col.not_in(e.op, OPERATIONS)),
    Check("missing_field", ".syncCount is missing", lambda e: col.is_null(e.sync)),
    Check("bad_field_type", ".syncCount is negative", lambda e: col.negative(e.sync)),
    Check("missing_field", ".lastModifiedDate is missing", lambda e: col.is_null(e.date)),
    Check(
        "bad_field_type",
        ".lastModifiedDate is not an epoch-millisecond date between 1970 and 9999",
        lambda e: col.outside(e.date, 0, MAX_DATE_MS),
    ),
    Check(
        "bad_field_type",
        ".deviceLastModifiedDate is not an epoch-millisecond date between 1970 and 9999",
        lambda e: col.outside(e.device, 0, MAX_DATE_MS),
    ),
    Check(
        "bad_field_type",
        f".key is longer than {MAX_KEY_CHARS} characters (Cognito's limit)",
        lambda e: col.longer(e.key, MAX_KEY_CHARS),
    ),
    Check(
        "duplicate_keys",
        ".key repeats the key of an earlier element of the same record",
        lambda e: repeated_keys(e.parents, e.lengths, e.keys),
    ),
)


def item_detail(check: Check, position: int) -> str:
    """The detail of an element-level reject: which element, and what is wrong with it."""
    separator = "" if check.detail.startswith(".") else " "
    return f"{RECORDS_FIELD}[{position}]{separator}{check.detail}"


@dataclass
class Verdicts:
    """What the checks decided for each record of a chunk."""

    #: Index into RECORD_CHECKS of the check that failed, or -1.
    reason: np.ndarray
    #: Index into ITEM_CHECKS of the check that failed for the record's first bad element, or -1 (only
    #: for records that passed the record checks).
    item_reason: np.ndarray
    #: The position of that element in ``kinesisSyncRecords``.
    item_where: np.ndarray

    def rejected_by_checks(self) -> np.ndarray:
        """Records a record or element check rejected."""
        return (self.reason >= 0) | (self.item_reason >= 0)


def check_records(records: ParsedRecords, items: ParsedItems, blank: np.ndarray) -> Verdicts:
    """Apply RECORD_CHECKS, then ITEM_CHECKS to the elements of the records that passed, to every record not
    ``blank`` (rejected already by the exact check: its row is all nulls)."""
    n = records.n
    reason = np.full(n, -1, dtype=np.int16)
    for index, mask in enumerate([check.failed(records) for check in RECORD_CHECKS]):
        np.copyto(reason, index, where=mask & (reason < 0) & ~blank)
    item_reason = np.full(n, -1, dtype=np.int16)
    item_where = np.zeros(n, dtype=np.int64)
    if items.m:
        parents, positions = items.parents, items.positions
        used = records.inline_like[parents] & ~blank[parents] & (reason[parents] < 0)
        for index, mask in enumerate([check.failed(items) for check in ITEM_CHECKS]):
            bad = mask & used
            if not bad.any():
                continue
            bad_parents = parents[bad]
            fresh = item_reason[bad_parents] < 0
            # The first bad element of a record names the problem (np.unique keeps the first occurrence).
            uniq, first = np.unique(bad_parents[fresh], return_index=True)
            item_reason[uniq] = index
            item_where[uniq] = positions[bad][fresh][first]
            used &= item_reason[parents] < 0
    return Verdicts(reason, item_reason, item_where)
