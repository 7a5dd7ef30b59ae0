"""The SQL gate: every statement a client sends is parsed as Redshift SQL (sqlglot) and its syntax tree walked;
what Amazon Redshift refuses is refused with Redshift's error text where it is known, and what Redshift and
PostgreSQL spell differently is translated, so that PostgreSQL runs what Redshift would run.

Pure: no sockets, no database. ``inspect(sql)`` splits a query string into statements and returns, for each,
what the session must do with it (run a text on PostgreSQL, run a COPY from S3, commit around a TRUNCATE...) or
raises :class:`GateError`. The lists it checks against are data in ``local/redshift/reference.py``; the
decisions where AWS's reference is silent are written in docs/redshift-emulator.md.

Translation is by token spans of the original text (never by regenerating the statement through sqlglot), so
a statement that needs no translation reaches PostgreSQL byte for byte as the client sent it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.dialects.redshift import Redshift
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from local.redshift.errors import RedshiftError
from local.redshift.reference import (
    ALLOWED_FUNCTIONS,
    ALLOWED_TYPES,
    PASSTHROUGH_COMMANDS,
    POSTGRES_SET_PARAMETERS,
    SET_PARAMETERS,
    SYSTEM_VIEWS,
    UNSUPPORTED_TYPE_NAMES,
    doc_url,
)

Kind = Literal["sql", "copy", "truncate", "alter_isolation", "empty"]

#: Redshift's text for anything its type/function check refuses (the names follow as INFO messages).
SPECIFIED_TYPES_OR_FUNCTIONS = "Specified types or functions (one per INFO message) not supported on Redshift tables."
#: Redshift's text for a command it does not run on its tables (CREATE INDEX, ...).
COMMAND_NOT_SUPPORTED = 'SQL command "{text}" not supported on Redshift tables.'
NOT_SUPPORTED = "0A000"  # feature_not_supported
#: What VERSION() answers: Redshift's text (clients parse the "Redshift" part), marked as the emulator's.
VERSION = (
    "PostgreSQL 8.0.2 on i686-pc-linux-gnu, compiled by GCC gcc (GCC) 3.4.2 20041017 (Red Hat 3.4.2-6.fc3), "
    "Redshift 1.0.0 (local Redshift emulator on PostgreSQL 16)"
)
SYNTAX_ERROR = "42601"

#: What runs for a statement that means nothing to PostgreSQL (answered with NoData, like a utility command).
NOOP_SQL = "DO $redshift_emulator$ BEGIN END $redshift_emulator$"
_ALTER_ATTRIBUTES_ONLY = re.compile(r"^\s*alter\s+table\s+\S+\s+alter(\s+column\s+\S+)?\s*$", re.IGNORECASE)
_FUNCTION_PARSERS = frozenset(Redshift.parser_class.FUNCTION_PARSERS)
#: Function-like syntax that is not a function call: never checked against the function list.
_SYNTAX_FUNCTIONS = frozenset({"CAST", "CONVERT", "EXTRACT", "POSITION", "SUBSTRING", "TRIM", "DECODE", "CHAR"})
_TOKENIZER = Redshift.tokenizer_class()


class GateError(RedshiftError):
    """A statement Redshift refuses. ``infos``: the INFO messages Redshift sends before the error (one per
    refused type or function); ``construct``: a short name of what was refused (for the emulator's log)."""

    def __init__(
        self,
        message: str,
        *,
        construct: str,
        sqlstate: str = "XX000",
        detail: str | None = None,
        hint: str | None = None,
        code: int | None = None,
        infos: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, sqlstate=sqlstate, detail=detail, hint=hint, code=code)
        self.construct = construct
        self.infos = infos


def redshift_detail(error: str, code: int, context: str) -> str:
    """The DETAIL block Redshift attaches to its internal errors (error, code, context, ...)."""
    line = "-" * 47
    return (
        f"\n  {line}\n  error:  {error}\n  code:      {code}\n  context:   {context}\n  query:     0\n"
        f"  location:  redshift-emulator\n  process:   padbmaster [pid=0]\n  {line}\n"
    )


@dataclass(frozen=True)
class Statement:
    """One statement of a query string and what the session does with it.

    ``text``: the statement as the client wrote it. ``run``: the text PostgreSQL runs (``text`` unless
    something was translated). ``kind``: ``sql`` (run ``run``), ``copy`` (a COPY from S3, run by the emulator),
    ``truncate`` (run, then commit: Redshift's TRUNCATE commits its transaction), ``alter_isolation``
    (``ALTER DATABASE ... ISOLATION LEVEL``), ``empty``. ``isolation``: the level asked for by alter_isolation;
    ``database``: the database it names. ``command``: the statement's first keyword (for logs).
    """

    text: str
    run: str
    kind: Kind = "sql"
    command: str = ""
    isolation: str | None = None
    database: str | None = None
    translated: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------------------------------------------
# Splitting


def _tokens(sql: str) -> list[Token]:
    try:
        return list(_TOKENIZER.tokenize(sql))
    except TokenError as err:
        raise GateError(f"syntax error: {err}", construct="unreadable statement", sqlstate=SYNTAX_ERROR) from None


def split(sql: str) -> list[tuple[str, list[Token]]]:
    """The statements of a query string (text and tokens, offsets relative to that text); empty ones dropped."""
    out: list[tuple[str, list[Token]]] = []
    current: list[Token] = []
    for token in [*_tokens(sql), None]:
        if token is None or token.token_type == TokenType.SEMICOLON:
            if current:
                text = sql[current[0].start : current[-1].end + 1]
                out.append((text, _tokens(text)))
            current = []
        else:
            current.append(token)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The gate


def inspect(sql: str, *, parse_copy: Callable[[str], Any] | None = None) -> list[Statement]:
    """Check every statement of ``sql`` and say how to run it; :class:`GateError` for the first refused one.

    ``parse_copy``: rs-copy's ``parse_copy`` (None when a COPY is not from S3, an error for a COPY form Redshift
    refuses); without it every COPY is refused."""
    statements = split(sql)
    if not statements:
        return [Statement(text=sql, run=sql, kind="empty")]
    return [_inspect_one(text, tokens, parse_copy) for text, tokens in statements]


def _inspect_one(text: str, tokens: list[Token], parse_copy: Callable[[str], Any] | None) -> Statement:
    first = tokens[0].text.upper()
    words = [t.text.upper() for t in tokens]
    if first == "COPY":
        return _copy(text, parse_copy)
    if first == "MERGE" and "REMOVE" in words and "DUPLICATES" in words:
        raise GateError(
            "MERGE ... REMOVE DUPLICATES is not implemented by the Redshift emulator",
            construct="MERGE REMOVE DUPLICATES",
            sqlstate=NOT_SUPPORTED,
            hint="write the MERGE with WHEN MATCHED and WHEN NOT MATCHED clauses (AWS's MERGE page)",
        )
    if first in ("SAVEPOINT", "RELEASE") or (first == "ROLLBACK" and "SAVEPOINT" in words):
        raise GateError(
            f'SQL command "{text}" not supported.',
            construct="savepoints",
            sqlstate=NOT_SUPPORTED,
            detail=f"Redshift has no savepoints ({doc_url('c_unsupported-postgresql-functions')})",
        )
    if first in ("ABORT", "START") or words[:3] == ["SET", "SESSION", "AUTHORIZATION"]:
        return Statement(text=text, run=text, command=first)  # PostgreSQL's and Redshift's alike
    _check_tokens(text, tokens)
    original = text
    attributes: list[str] = []
    if first in ("CREATE", "ALTER"):
        # Redshift's table and column attributes are read (and dropped) before sqlglot reads the rest: it does
        # not know column-level DISTKEY/SORTKEY.
        text, attributes = _strip_attributes(text, tokens)
        if attributes and _ALTER_ATTRIBUTES_ONLY.match(text):
            # ALTER TABLE t ALTER DISTSTYLE/DISTKEY/SORTKEY/ENCODE: storage only, nothing for PostgreSQL to do.
            return Statement(text=original, run=NOOP_SQL, command="ALTER", translated=tuple(attributes))
        tokens = _tokens(text)
    try:
        trees = sqlglot.parse(text, read="redshift")
    except (ParseError, TokenError) as err:
        raise GateError(
            f"syntax error: the Redshift emulator cannot read this statement as Redshift SQL ({_first_line(err)})",
            construct="unparsable statement",
            sqlstate=SYNTAX_ERROR,
            hint="the emulator refuses what it cannot parse rather than let PostgreSQL run it",
        ) from None
    tree = trees[0] if trees else None
    if tree is None:
        return Statement(text=original, run=original, kind="empty")
    command = first
    if isinstance(tree, exp.Command):
        return replace(_command(text, tokens, tree), text=original)
    _check_tree(text, tree)
    run, translated = _translate(text, tokens, tree)
    kind: Kind = "truncate" if isinstance(tree, exp.TruncateTable) else "sql"
    return Statement(text=original, run=run, kind=kind, command=command, translated=tuple(attributes + translated))


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _copy(text: str, parse_copy: Callable[[str], Any] | None) -> Statement:
    cmd = parse_copy(text) if parse_copy is not None else None
    if cmd is None and re.search(r"\bfrom\s+'(dynamodb|emr|s3)://|\bssh\b", text, re.IGNORECASE):
        raise GateError(
            "this COPY source is valid on Redshift but not implemented by the Redshift emulator",
            construct="COPY from a source the emulator lacks",
            sqlstate=NOT_SUPPORTED,
            hint="the emulator runs COPY ... FROM 's3://...' only; see docs/redshift-emulator.md",
        )
    if cmd is None:
        raise GateError(
            "COPY from this source is not supported by Amazon Redshift: only COPY ... FROM 's3://...' (and the other "
            "AWS sources) loads a table",
            construct="COPY not from S3",
            sqlstate=NOT_SUPPORTED,
            detail="COPY FROM STDIN and COPY to or from a file of the server do not exist in Redshift "
            f"({doc_url('r_COPY')})",
        )
    return Statement(text=text, run=text, kind="copy", command="COPY")


def _command(text: str, tokens: list[Token], tree: exp.Command) -> Statement:
    """Statements sqlglot reads only as a command: LOCK, ALTER DATABASE, CREATE ... ON COMMIT, and a few
    utility commands PostgreSQL runs as Redshift does."""
    # sqlglot's tokenizer keeps a command's rest as one string token: read the words from the text.
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", text.upper())
    first = words[0]
    if first == "LOCK":
        if "MODE" in words or "IN" in words:
            raise GateError(
                'syntax error at or near "in"',
                construct="LOCK ... IN <mode> MODE",
                sqlstate=SYNTAX_ERROR,
                detail=f"Redshift's LOCK takes table names only: LOCK [TABLE] t1 [, ...] ({doc_url('r_LOCK')})",
            )
        return Statement(text=text, run=text, command="LOCK")
    if first == "ALTER" and words[1:2] == ["DATABASE"] and "ISOLATION" in words:
        level = words[-1].lower()
        if level not in ("serializable", "snapshot"):
            raise GateError(
                f'syntax error at or near "{words[-1].lower()}"',
                construct="ALTER DATABASE ISOLATION LEVEL",
                sqlstate=SYNTAX_ERROR,
            )
        return Statement(
            text=text,
            run=text,
            kind="alter_isolation",
            command="ALTER DATABASE",
            isolation=level,
            database=words[2].lower(),
        )
    if "ON" in words and "COMMIT" in words and first == "CREATE":
        raise GateError(
            'syntax error at or near "on"',
            construct="ON COMMIT",
            sqlstate=SYNTAX_ERROR,
            detail=f"Redshift's CREATE TABLE has no ON COMMIT clause ({doc_url('r_CREATE_TABLE_NEW')})",
        )
    if first in ("SET", "RESET") and len(words) > 1:
        name = words[2] if words[1] in ("SESSION", "LOCAL") and len(words) > 2 else words[1]
        return _set_parameter(text, name.lower(), first)
    if first in PASSTHROUGH_COMMANDS:
        return Statement(text=text, run=text, command=first)
    raise GateError(
        f'SQL command "{text}" not supported on Redshift tables.',
        construct=f"{first} command",
        sqlstate=NOT_SUPPORTED,
        hint="the Redshift emulator refuses statements it cannot check; see docs/redshift-emulator.md",
    )


def _set_parameter(text: str, name: str, command: str) -> Statement:
    """SET/RESET of a parameter Redshift has: PostgreSQL's own as it is, Redshift-only ones as placeholders."""
    if name in ("session", "time"):  # SET SESSION AUTHORIZATION, SET TIME ZONE
        return Statement(text=text, run=text, command=command)
    if name not in SET_PARAMETERS:
        raise GateError(
            f'unrecognized configuration parameter "{name}"',
            construct=f"{command} {name}",
            sqlstate="42704",
            detail=f"Redshift's settable parameters: {doc_url('cm_chap_ConfigurationRef')}",
        )
    if name in POSTGRES_SET_PARAMETERS:
        return Statement(text=text, run=text, command=command)
    run = re.sub(rf"\b{re.escape(name)}\b", f"redshift.{name}", text, count=1, flags=re.IGNORECASE)
    return Statement(text=text, run=run, command=command, translated=(f"set {name}",))


_TOKEN_TYPES_REFUSED = {
    "BYTEA": ("bytea", "type bytea"),
}


def _check_tokens(text: str, tokens: list[Token]) -> None:
    """What sqlglot folds into an accepted node: bytea reads as VARBYTE."""
    for token in tokens:
        refused = _TOKEN_TYPES_REFUSED.get(token.text.upper())
        if refused:
            name, construct = refused
            raise GateError(
                SPECIFIED_TYPES_OR_FUNCTIONS,
                construct=construct,
                infos=(f'Type "{name}" not supported.',),
                detail=f"see {doc_url('c_unsupported-postgresql-datatypes')}",
            )


def _refuse(construct: str, page: str, message: str | None = None, *, sqlstate: str = NOT_SUPPORTED) -> GateError:
    return GateError(
        message or f"{construct} is not supported by Amazon Redshift",
        construct=construct,
        sqlstate=sqlstate,
        detail=f"see {doc_url(page)}",
    )


def _check_tree(text: str, tree: exp.Expr) -> None:
    """Walk the syntax tree; raise for the first construct Redshift refuses."""
    if not isinstance(
        tree,
        (
            exp.Query, exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter,
            exp.TruncateTable, exp.Transaction, exp.Commit, exp.Rollback, exp.Set, exp.Grant, exp.Revoke,
            exp.Describe, exp.Show, exp.Analyze, exp.Comment,
        ),
    ):  # fmt: skip
        raise GateError(
            f'syntax error at or near "{text.split()[0]}"',
            construct=f"{type(tree).__name__} statement",
            sqlstate=SYNTAX_ERROR,
        )
    if isinstance(tree, exp.Create):
        _check_create(text, tree)
    if isinstance(tree, exp.Merge):
        _check_merge(tree)
    if isinstance(tree, exp.Set):
        _check_set(tree)
    if isinstance(tree, exp.Rollback) and tree.args.get("savepoint"):
        raise _refuse("ROLLBACK TO SAVEPOINT", "c_unsupported-postgresql-functions")
    infos: list[str] = []
    for node in tree.walk():
        _check_node(node, tree, infos, text)
    infos += _check_functions(text, tree)
    if infos:
        raise GateError(
            SPECIFIED_TYPES_OR_FUNCTIONS,
            construct="unsupported types or functions: " + "; ".join(infos),
            infos=tuple(infos),
            detail=f"see {doc_url('c_unsupported-postgresql-functions')} and {doc_url('c_Supported_data_types')}",
        )


def _check_node(node: exp.Expr, tree: exp.Expr, infos: list[str], text: str) -> None:
    if isinstance(node, exp.OnConflict):
        raise _refuse("INSERT ... ON CONFLICT", "r_INSERT_30", 'syntax error at or near "on"', sqlstate=SYNTAX_ERROR)
    if isinstance(node, exp.Returning):
        raise _refuse("RETURNING", "r_INSERT_30", 'syntax error at or near "returning"', sqlstate=SYNTAX_ERROR)
    if isinstance(node, exp.Distinct) and node.args.get("on") is not None:
        raise _refuse("SELECT DISTINCT ON", "r_SELECT_list", 'syntax error at or near "on"', sqlstate=SYNTAX_ERROR)
    if isinstance(node, exp.Filter):
        raise _refuse(
            "aggregate FILTER (WHERE ...)",
            "c_Aggregate_Functions",
            'syntax error at or near "("',
            sqlstate=SYNTAX_ERROR,
        )
    if isinstance(node, exp.Lock):
        raise _refuse("SELECT ... FOR UPDATE/SHARE", "r_SELECT_synopsis")
    if isinstance(node, exp.Lateral):
        raise _refuse(
            "LATERAL", "c_unsupported-postgresql-features", 'syntax error at or near "lateral"', sqlstate=SYNTAX_ERROR
        )
    if isinstance(node, exp.Array):
        raise _refuse("array constructor ARRAY[...]", "c_unsupported-postgresql-features")
    if isinstance(node, exp.Tuple) and not isinstance(node.parent, (exp.In, exp.Values, exp.Insert)):
        raise _refuse("row constructor (a, b, ...)", "c_unsupported-postgresql-features")
    if isinstance(node, exp.Anonymous) and node.name.lower() == "row":
        raise _refuse("row constructor ROW(...)", "c_unsupported-postgresql-features")
    if isinstance(node, exp.Values) and not (isinstance(node.parent, exp.Insert) or _is_merge_insert(node)):
        raise _refuse("a VALUES list used as a constant table", "c_unsupported-postgresql-features")
    if isinstance(node, exp.Unnest) or (isinstance(node, exp.Table) and isinstance(node.this, exp.Func)):
        raise _refuse("a table function in FROM", "c_unsupported-postgresql-features")
    if isinstance(node, (exp.NullSafeEQ, exp.NullSafeNEQ)):
        infos.append('Function "IS DISTINCT FROM" not supported.')
    if isinstance(node, _JSON_OPERATORS) and "start" not in node.meta:  # the operator, not a function of that name
        infos.append(f'Operator "{_operator_text(node)}" not supported.')
    if isinstance(node, (exp.Limit, exp.Offset)) and node.find(exp.Placeholder, exp.Parameter) is not None:
        raise GateError(
            "Not implemented",
            construct=f"bound {'LIMIT' if isinstance(node, exp.Limit) else 'OFFSET'}",
            detail=redshift_detail("Not implemented", 1001, "'IsA(cons, Const)' - "),
            hint="Redshift needs a constant LIMIT/OFFSET: put the number in the statement text "
            "(aws/amazon-redshift-python-driver#24)",
        )
    if isinstance(node, exp.DataType):
        _check_type(node, infos)


#: jsonb and array operators (PostgreSQL's ->, ->>, #>, #>>, ?, ?|, ?&, @>, <@) and how they are written.
_OPERATOR_TEXT: dict[type[exp.Expr], str] = {
    exp.JSONExtract: "->", exp.JSONExtractScalar: "->>", exp.JSONBExtract: "#>", exp.JSONBExtractScalar: "#>>",
    exp.JSONBContainsTopKey: "?", exp.JSONBContainsAnyTopKeys: "?|", exp.JSONBContainsAllTopKeys: "?&",
    exp.JSONBContains: "@>", exp.ArrayContainsAll: "@>", exp.ArrayContainedBy: "<@",
}  # fmt: skip
_JSON_OPERATORS = tuple(_OPERATOR_TEXT)


def _operator_text(node: exp.Expr) -> str:
    return _OPERATOR_TEXT.get(type(node), type(node).__name__)


def _is_merge_insert(node: exp.Expr) -> bool:
    return isinstance(node.parent, (exp.Insert, exp.When))


def _type_name(node: exp.DataType) -> str:
    name = node.this.name if isinstance(node.this, exp.DataType.Type) else str(node.this)
    return UNSUPPORTED_TYPE_NAMES.get(name, name.lower())


def _check_type(node: exp.DataType, infos: list[str]) -> None:
    name = node.this.name if isinstance(node.this, exp.DataType.Type) else str(node.this)
    if name in ALLOWED_TYPES and not node.args.get("nested"):
        return
    column = node.parent if isinstance(node.parent, exp.ColumnDef) else None
    if column is not None:
        schema = column.parent
        table = schema.this.name if isinstance(schema, exp.Schema) and isinstance(schema.this, exp.Table) else "?"
        raise GateError(
            f'Column "{table}.{column.name}" has unsupported type "{_type_name(node)}".',
            construct=f"column type {_type_name(node)}",
            sqlstate=NOT_SUPPORTED,
            detail=f"see {doc_url('c_Supported_data_types')}",
        )
    infos.append(f'Type "{_type_name(node)}" not supported.')


def _check_functions(text: str, tree: exp.Expr) -> list[str]:
    """Every function called must be in Redshift's SQL functions reference."""
    called: set[str] = set()
    for node in tree.find_all(exp.Func):
        if isinstance(node, exp.Anonymous) and node.name.lower() == "values" and node.find_ancestor(exp.When):
            continue  # MERGE's "INSERT VALUES (...)" without a column list reads as a call
        if isinstance(node, exp.Anonymous):
            called.add(node.name.lower())
        elif "start" in node.meta and "end" in node.meta:
            called.add(text[node.meta["start"] : node.meta["end"] + 1].lower())
    # Functions sqlglot reads with a parser of its own keep no position: find their names in the tokens.
    tokens = _tokens(text)
    for i, token in enumerate(tokens[:-1]):
        upper = token.text.upper()
        if (
            upper in _FUNCTION_PARSERS
            and tokens[i + 1].token_type == TokenType.L_PAREN
            and upper not in _SYNTAX_FUNCTIONS
        ):
            called.add(upper.lower())
    refused = sorted(name for name in called if name.split(".")[-1] not in ALLOWED_FUNCTIONS and name != "row")
    return [f'Function "{name}()" not supported.' for name in refused]


def _check_create(text: str, tree: exp.Create) -> None:
    kind = (tree.args.get("kind") or "").upper()
    if kind == "INDEX":
        raise GateError(
            COMMAND_NOT_SUPPORTED.format(text=text),
            construct="CREATE INDEX",
            sqlstate=NOT_SUPPORTED,
            detail="Redshift has no indexes: sort and distribution keys take their place "
            f"({doc_url('c_unsupported-postgresql-features')})",
        )
    if kind == "SEQUENCE":
        raise GateError(
            COMMAND_NOT_SUPPORTED.format(text=text),
            construct="CREATE SEQUENCE",
            sqlstate=NOT_SUPPORTED,
            detail="Redshift has no sequences: use an IDENTITY column "
            f"({doc_url('c_unsupported-postgresql-features')})",
        )
    if kind not in ("TABLE", "VIEW", "SCHEMA", "FUNCTION", "DATABASE", ""):
        raise GateError(COMMAND_NOT_SUPPORTED.format(text=text), construct=f"CREATE {kind}", sqlstate=NOT_SUPPORTED)
    if tree.find(exp.CheckColumnConstraint) is not None:
        raise GateError(
            "ALTER/CREATE TABLE column CHECK constraint is not supported",
            construct="CHECK constraint",
            sqlstate=NOT_SUPPORTED,
            detail=f"see {doc_url('c_unsupported-postgresql-features')}",
        )
    if tree.find(exp.OnCommitProperty) is not None:
        raise GateError('syntax error at or near "on"', construct="ON COMMIT", sqlstate=SYNTAX_ERROR)
    for prop in tree.find_all(exp.ExcludeColumnConstraint, exp.PartitionedByProperty):
        raise _refuse(type(prop).__name__, "c_unsupported-postgresql-features")


def _check_merge(tree: exp.Merge) -> None:
    """AWS's MERGE: no alias on the target, a table (not a subquery) as source, equality predicates in ON,
    unqualified SET columns, exactly one WHEN MATCHED (UPDATE or DELETE) and one WHEN NOT MATCHED INSERT with no
    extra conditions, no WITH."""
    page = "r_MERGE"
    target = tree.this
    if isinstance(target, exp.Table) and target.alias:
        raise _refuse(
            "MERGE with an alias on the target table", page, 'syntax error at or near "as"', sqlstate=SYNTAX_ERROR
        )
    if tree.args.get("with_") or tree.args.get("with"):
        raise _refuse("MERGE with a WITH clause", page, "You can't use the WITH clause in a MERGE statement.")
    source = tree.args.get("using")
    if not isinstance(source, exp.Table) or isinstance(source.this, exp.Func):
        raise _refuse("MERGE whose source is not a table", page, "MERGE source_table can't be a view or a subquery.")
    for predicate in _conjuncts(tree.args.get("on")):
        if not (
            isinstance(predicate, exp.EQ)
            and isinstance(predicate.this, exp.Column)
            and isinstance(predicate.expression, exp.Column)
        ):
            raise _refuse(
                "MERGE with a non-equality predicate in ON",
                page,
                "MERGE match_condition must be equality predicates between source and target columns.",
            )
    whens = tree.args.get("whens")
    clauses = list(whens.expressions) if whens is not None else []
    matched = [w for w in clauses if w.args.get("matched")]
    not_matched = [w for w in clauses if not w.args.get("matched")]
    if len(matched) != 1 or len(not_matched) != 1 or any(w.args.get("source") for w in clauses):
        raise _refuse(
            "MERGE without exactly one WHEN MATCHED and one WHEN NOT MATCHED clause",
            page,
            "MERGE needs one WHEN MATCHED THEN UPDATE/DELETE and one WHEN NOT MATCHED THEN INSERT clause "
            "(or REMOVE DUPLICATES).",
        )
    for when in clauses:
        if when.args.get("condition") is not None:
            raise _refuse(
                "MERGE WHEN ... AND <condition>", page, 'syntax error at or near "and"', sqlstate=SYNTAX_ERROR
            )
        then = when.args.get("then")
        if isinstance(then, exp.Update):
            for assignment in then.expressions:
                column = assignment.this if isinstance(assignment, exp.EQ) else None
                if isinstance(column, exp.Column) and column.table:
                    raise _refuse(
                        "MERGE SET with a qualified column",
                        page,
                        f'MERGE SET column "{column.sql()}" must not name its table: write "{column.name}"',
                    )
        if not when.args.get("matched") and not isinstance(then, exp.Insert):
            raise _refuse("MERGE WHEN NOT MATCHED without INSERT", page)


def _conjuncts(node: exp.Expr | None) -> Iterable[exp.Expr]:
    if node is None:
        return []
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    if isinstance(node, exp.And):
        return [*_conjuncts(node.this), *_conjuncts(node.expression)]
    return [node]


def _check_set(tree: exp.Set) -> None:
    for item in tree.expressions:
        target = item.this
        name = target.this.name if isinstance(target, exp.EQ) and isinstance(target.this, exp.Column) else None
        if name is None and isinstance(target, exp.EQ):
            name = target.this.sql().lower()
        if name is None:
            continue
        if name.lower() not in SET_PARAMETERS:
            raise GateError(
                f'unrecognized configuration parameter "{name.lower()}"',
                construct=f"SET {name.lower()}",
                sqlstate="42704",
                detail=f"Redshift's settable parameters: {doc_url('cm_chap_ConfigurationRef')}",
            )


# ---------------------------------------------------------------------------------------------------------------
# Translation


_TABLE_ATTRIBUTE_WORDS = frozenset({"DISTSTYLE", "DISTKEY", "SORTKEY", "COMPOUND", "INTERLEAVED", "ENCODE", "BACKUP"})


def _translate(text: str, tokens: list[Token], tree: exp.Expr) -> tuple[str, list[str]]:
    """Token-span edits that make ``text`` PostgreSQL's: Redshift table attributes dropped, GETDATE()/SYSDATE with
    Redshift's meaning, system views mapped, IDENTITY columns, Redshift-only SET parameters kept as placeholders."""
    edits: list[tuple[int, int, str]] = []  # (start, end exclusive, replacement)
    notes: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        upper = token.text.upper()
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if upper == "VERSION" and nxt is not None and nxt.token_type == TokenType.L_PAREN and not _qualified(tokens, i):
            close = _matching_paren(tokens, i + 1)
            edits.append((token.start, tokens[close].end + 1, f"'{VERSION}'::varchar"))
            notes.append("version")
            i = close + 1
            continue
        if upper == "GETDATE" and nxt is not None and nxt.token_type == TokenType.L_PAREN:
            close = _matching_paren(tokens, i + 1)
            # Redshift: the start of the current statement, to the second, in the session's time zone.
            edits.append((token.start, tokens[close].end + 1, "date_trunc('second', statement_timestamp()::timestamp)"))
            notes.append("getdate")
            i = close + 1
            continue
        if upper == "SYSDATE" and (nxt is None or nxt.token_type != TokenType.L_PAREN) and not _qualified(tokens, i):
            # Redshift: the start of the current transaction, with microseconds.
            edits.append((token.start, token.end + 1, "transaction_timestamp()::timestamp"))
            notes.append("sysdate")
        elif token.text.lower() in SYSTEM_VIEWS and not _qualified(tokens, i) and token.token_type == TokenType.VAR:
            edits.append((token.start, token.end + 1, SYSTEM_VIEWS[token.text.lower()]))
            notes.append(token.text.lower())
        i += 1
    if isinstance(tree, exp.Set):
        for item in tree.expressions:
            target = item.this
            if isinstance(target, exp.EQ) and isinstance(target.this, exp.Column):
                name = target.this.name.lower()
                if name not in POSTGRES_SET_PARAMETERS:
                    for token in tokens:
                        if token.text.lower() == name and token.token_type == TokenType.VAR:
                            edits.append((token.start, token.end + 1, f"redshift.{name}"))
                            notes.append(f"set {name}")
                            break
    return _apply(text, edits), notes


def _strip_attributes(text: str, tokens: list[Token]) -> tuple[str, list[str]]:
    """CREATE/ALTER TABLE without Redshift's DISTSTYLE, DISTKEY, SORTKEY, ENCODE and BACKUP (PostgreSQL has no
    such storage choices), with IDENTITY(seed, step) as PostgreSQL's identity column."""
    edits: list[tuple[int, int, str]] = []
    notes: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        upper = token.text.upper()
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if upper in _TABLE_ATTRIBUTE_WORDS and token.token_type not in (TokenType.STRING, TokenType.IDENTIFIER):
            j = _attribute_end(tokens, i)
            edits.append((token.start, tokens[j - 1].end + 1, ""))
            notes.append(upper.lower())
            i = j
            continue
        if upper == "IDENTITY" and nxt is not None and nxt.token_type == TokenType.L_PAREN:
            close = _matching_paren(tokens, i + 1)
            args = [t.text for t in tokens[i + 2 : close] if t.token_type == TokenType.NUMBER]
            seed, step = [*args, "1", "1"][:2]
            replacement = f"generated by default as identity (start with {seed} increment by {step})"
            edits.append((token.start, tokens[close].end + 1, replacement))
            notes.append("identity")
            i = close + 1
            continue
        i += 1
    return _apply(text, edits), notes


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    """``text`` with the (start, end, replacement) edits made; trailing blanks left by a removal dropped."""
    if not edits:
        return text
    out = []
    pos = 0
    for start, end, replacement in sorted(edits):
        out.append(text[pos:start])
        out.append(replacement)
        pos = end
    out.append(text[pos:])
    return re.sub(r"[ \t]+(?=\n|$)", "", "".join(out))


def _qualified(tokens: list[Token], i: int) -> bool:
    return (i > 0 and tokens[i - 1].token_type == TokenType.DOT) or (
        i + 1 < len(tokens) and tokens[i + 1].token_type == TokenType.DOT
    )


def _matching_paren(tokens: list[Token], open_index: int) -> int:
    depth = 0
    for j in range(open_index, len(tokens)):
        if tokens[j].token_type == TokenType.L_PAREN:
            depth += 1
        elif tokens[j].token_type == TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return j
    raise GateError("syntax error at end of input", construct="unbalanced parentheses", sqlstate=SYNTAX_ERROR)


def _attribute_end(tokens: list[Token], i: int) -> int:
    """End (exclusive) of one Redshift table/column attribute starting at ``i``: DISTSTYLE x, DISTKEY [(c)],
    [COMPOUND|INTERLEAVED] SORTKEY [(c, ...) | AUTO], ENCODE x, BACKUP YES|NO."""
    upper = tokens[i].text.upper()
    j = i + 1
    if upper in ("COMPOUND", "INTERLEAVED"):
        j = i + 2  # the SORTKEY word
    if upper in ("DISTSTYLE", "ENCODE", "BACKUP"):
        return min(i + 2, len(tokens))
    if j < len(tokens) and tokens[j].token_type == TokenType.L_PAREN:
        return _matching_paren(tokens, j) + 1
    if j < len(tokens) and tokens[j].text.upper() == "AUTO":
        return j + 1
    return j
