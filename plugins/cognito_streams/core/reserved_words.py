"""Words a schema (or any identifier we substitute bare into SQL text) must not be: data, with its source.

A validated identifier is placed into statements without quotes (``${schema}.records``), so a reserved word
there would break or change the statement on one of the two engines. The lists are copied from the engines'
own references and kept apart, so that each can be compared with its source when the engines change.
"""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Amazon Redshift's reserved words, as listed (all of them) in the Amazon Redshift Database Developer Guide,
#: "Reserved words": https://docs.aws.amazon.com/redshift/latest/dg/r_pg_keywords.html (read 2026-11).
#: The page adds that START and CONNECT are not reserved but fail as unquoted table aliases: we refuse them too.
REDSHIFT_RESERVED = _words(
    """
    aes128 aes256 all allowoverwrite analyse analyze and any array as asc authorization az64 backup between binary
    blanksasnull both bytedict bzip2 case cast check collate column constraint create credentials cross
    current_date current_time current_timestamp current_user current_user_id default deferrable deflate defrag
    delta delta32k desc disable distinct do else emptyasnull enable encode encrypt encryption end except explicit
    false for foreign freeze from full globaldict256 globaldict64k grant group gzip having identity ignore ilike in
    initially inner intersect interval into is isnull join leading left like limit localtime localtimestamp lun luns
    lzo lzop minus mostly16 mostly32 mostly8 natural new not notnull null nulls off offline offset oid old on only
    open or order outer overlaps parallel partition percent permissions pivot placing primary raw readratio recover
    references rejectlog resort respect restore right select session_user similar snapshot some sysdate system table
    tag tdes text255 text32k then timestamp to top trailing true truncatecolumns union unique unnest unpivot user
    using verbose wallet when where with without
    start connect
    """
)

#: PostgreSQL 16's reserved key words (the local stand-in): ``select word from pg_get_keywords() where catcode in
#: ('R', 'T')`` on PostgreSQL 16.2 ("reserved" and "reserved, can be function or type"; Appendix C of the
#: PostgreSQL documentation, https://www.postgresql.org/docs/16/sql-keywords-appendix.html).
#: tests/integration/test_reserved_words.py compares it with the running server.
POSTGRES_RESERVED = _words(
    """
    all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate collation
    column concurrently constraint create cross current_catalog current_date current_role current_schema current_time
    current_timestamp current_user default deferrable desc distinct do else end except false fetch for foreign freeze
    from full grant group having ilike in initially inner intersect into is isnull join lateral leading left like
    limit localtime localtimestamp natural not notnull null offset on only or order outer overlaps placing primary
    references returning right select session_user similar some symmetric system_user table tablesample then to
    trailing true union unique user using variadic verbose when where window with
    """
)

#: Not reserved by either engine, but words of our own statements (commands and clauses) that would make a
#: statement read wrongly to a person or a parser if a schema were named after them.
STATEMENT_WORDS = _words(
    """
    by delete drop insert lock merge set update values
    """
)

#: What ``validate_identifier`` refuses.
RESERVED: frozenset[str] = REDSHIFT_RESERVED | POSTGRES_RESERVED | STATEMENT_WORDS
