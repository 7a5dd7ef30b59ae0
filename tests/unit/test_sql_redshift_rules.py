"""Rules of Redshift's SQL that PostgreSQL does not enforce, checked on every statement of ``sql/`` rendered for
both engines, by walking each statement's AST (sqlglot), not by matching text:

- no LIMIT/OFFSET holds a bound placeholder: redshift-connector binds values on the server and Redshift answers
  a bound LIMIT with ``Not implemented ... IsA(cons, Const)`` (aws/amazon-redshift-python-driver#24);
- every MERGE is in the form of AWS's MERGE page (https://docs.aws.amazon.com/redshift/latest/dg/r_MERGE.html):
  the target a table without alias, the source a table (not a view or subquery; an alias is allowed), ON only
  equality predicates between a target and a source column, SET columns without a table name, exactly one
  WHEN MATCHED (UPDATE or DELETE) and one WHEN NOT MATCHED INSERT with no extra predicate, no WITH. (REMOVE
  DUPLICATES, AWS's other form, is not used here and sqlglot cannot parse it: a statement using it fails to
  parse, which fails this test until the checker learns it.)

Each checker is itself tested on statements that break one rule, so that it can fail.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from cognito_streams.core.sql_text import ENGINES, SqlTextError, WarehouseSql, validate_limit
from tests.support.sql_statements import every_statement, parse

#: sqlglot does not know LOCK and falls back to a bare Command for it; such statements are checked by their
#: tokens instead (a Command has no AST to walk).
COMMAND_PREFIXES = ("lock table ",)


def _statements() -> Iterator[tuple[str, str, str]]:
    for engine in ENGINES:
        for name, text in every_statement(engine).items():
            yield engine, name, text


STATEMENTS = list(_statements())


def bound_limits(statement: str, engine: str) -> list[str]:
    """The LIMIT/OFFSET/FETCH clauses of ``statement`` that hold a bound placeholder (``%s``, ``$1``, ``?``)."""
    tree = parse(statement, engine)  # type: ignore[arg-type]
    if isinstance(tree, exp.Command):
        # No AST: look at the tokens; a LIMIT/OFFSET followed by a placeholder token is a bound limit.
        tokens = sqlglot.tokenize(statement, read=engine)
        return [
            f"{a.text} {b.text}"
            for a, b in itertools.pairwise(tokens)
            if a.token_type in (TokenType.LIMIT, TokenType.OFFSET)
            and b.token_type in (TokenType.PLACEHOLDER, TokenType.PARAMETER)
        ]
    found = []
    for clause in tree.find_all(exp.Limit, exp.Offset, exp.Fetch):
        if clause.find(exp.Placeholder, exp.Parameter):
            found.append(clause.sql(dialect=engine))
    return found


def merge_problems(statement: str, engine: str) -> list[str]:
    """Where a MERGE statement departs from AWS's form (empty: it is in that form, or it is not a MERGE)."""
    tree = parse(statement, engine)  # type: ignore[arg-type]
    problems: list[str] = []
    for merge in tree.find_all(exp.Merge):
        target, source = merge.this, merge.args.get("using")
        if merge.args.get("with_") or merge.args.get("with"):
            problems.append("MERGE with a WITH clause")
        if not isinstance(target, exp.Table) or target.alias:
            problems.append(f"target {target.sql()!r} must be a table without alias")
        if not isinstance(source, exp.Table):
            problems.append(f"source {source.sql() if source else None!r} must be a table, not a view or subquery")
        target_name = target.name if isinstance(target, exp.Table) else ""
        source_names = {source.name, source.alias} - {""} if isinstance(source, exp.Table) else set()
        for predicate in merge.args["on"].flatten() if isinstance(merge.args["on"], exp.And) else [merge.args["on"]]:
            sides = (predicate.this, predicate.expression) if isinstance(predicate, exp.EQ) else ()
            tables = sorted(s.table for s in sides if isinstance(s, exp.Column))
            if len(tables) != 2 or {tables[0], tables[1]} - ({target_name} | source_names) or tables[0] == tables[1]:
                problems.append(f"ON predicate {predicate.sql()!r} is not target column = source column")
        whens = merge.args["whens"].expressions
        matched = [w for w in whens if w.args.get("matched")]
        not_matched = [w for w in whens if not w.args.get("matched") and not w.args.get("source")]
        if len(matched) != 1 or len(not_matched) != 1 or len(whens) != 2:
            problems.append("needs exactly one WHEN MATCHED and one WHEN NOT MATCHED (or REMOVE DUPLICATES)")
        for when in whens:
            if when.args.get("condition") is not None:
                problems.append(f"WHEN clause with an extra predicate: {when.args['condition'].sql()!r}")
            then = when.args.get("then")
            if when.args.get("matched"):
                if isinstance(then, exp.Update):
                    for assignment in then.expressions:
                        column = assignment.this
                        if not isinstance(column, exp.Column) or column.table:
                            problems.append(f"SET column {column.sql()!r} must not name its table")
                elif not (isinstance(then, exp.Var) and then.name.lower() == "delete"):
                    problems.append(f"WHEN MATCHED must UPDATE or DELETE, not {then.sql() if then else None!r}")
            elif not isinstance(then, exp.Insert):
                problems.append(f"WHEN NOT MATCHED must INSERT, not {then.sql() if then else None!r}")
            elif isinstance(then.this, exp.Tuple) and any(
                not isinstance(c, exp.Column) or c.table for c in then.this.expressions
            ):
                problems.append("INSERT columns must not name their table")
    return problems


def _id(item: tuple[str, str, str]) -> str:
    return f"{item[0]}:{item[1]}"


@pytest.mark.parametrize(("engine", "name", "statement"), STATEMENTS, ids=[_id(s) for s in STATEMENTS])
def test_no_statement_binds_limit_or_offset(engine: str, name: str, statement: str) -> None:
    assert not bound_limits(statement, engine), f"{name} binds LIMIT/OFFSET: place a validated integer instead"


@pytest.mark.parametrize(("engine", "name", "statement"), STATEMENTS, ids=[_id(s) for s in STATEMENTS])
def test_every_merge_is_in_aws_form(engine: str, name: str, statement: str) -> None:
    assert not merge_problems(statement, engine), name


def test_every_statement_parses_or_is_a_known_command() -> None:
    # A statement sqlglot cannot parse would escape both checks above.
    for engine, name, statement in STATEMENTS:
        if isinstance(parse(statement, engine), exp.Command):  # type: ignore[arg-type]
            code = "\n".join(line for line in statement.splitlines() if not line.startswith("--"))
            assert code.lower().startswith(COMMAND_PREFIXES), f"{engine}:{name} did not parse"


def test_there_are_merges_to_check() -> None:
    merges = {name for engine, name, s in STATEMENTS if engine == "redshift" and parse(s, "redshift").find(exp.Merge)}
    assert {"load.sql:merge_records", "load.sql:merge_datasets", "bulk_publish.sql:merge_bulk_publish"} <= merges


# The checkers can fail -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "select a from s.t where b = %s order by a limit %s",
        "select a from s.t order by a limit 10 offset %s",
        "select a from (select a from s.t limit %s) as x",
        "select a from s.t order by a limit $1",
    ],
)
@pytest.mark.parametrize("engine", ENGINES)
def test_bound_limit_checker_finds_a_bound_limit(statement: str, engine: str) -> None:
    assert bound_limits(statement, engine)


def test_bound_limit_checker_accepts_a_literal() -> None:
    assert not bound_limits("select a from s.t where b = %s order by a limit 20 offset 5", "redshift")


GOOD_MERGE = (
    "merge into s.t using u as v on t.a = v.a and t.b = v.b "
    "when matched then update set c = v.c, d = t.d + v.d "
    "when not matched then insert (a, b, c, d) values (v.a, v.b, v.c, v.d)"
)


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        (GOOD_MERGE.replace("merge into s.t using", "merge into s.t as x using").replace("t.", "x."), "without alias"),
        (GOOD_MERGE.replace("using u as v", "using (select * from u) as v"), "not a view or subquery"),
        (GOOD_MERGE.replace("t.b = v.b", "t.b > v.b"), "target column = source column"),
        (GOOD_MERGE.replace("t.b = v.b", "t.b = 1"), "target column = source column"),
        (GOOD_MERGE.replace("update set c =", "update set t.c ="), "must not name its table"),
        (GOOD_MERGE.split(" when not matched")[0], "exactly one WHEN MATCHED"),
        (GOOD_MERGE.replace("when matched then", "when matched and v.c > 0 then"), "extra predicate"),
        ("with w as (select 1 as a) " + GOOD_MERGE.replace("using u as v", "using w as v"), "WITH"),
    ],
)
def test_merge_checker_finds_each_departure(statement: str, problem: str) -> None:
    found = merge_problems(statement, "redshift")
    assert any(problem in p for p in found), found


def test_merge_checker_accepts_aws_form() -> None:
    assert merge_problems(GOOD_MERGE, "redshift") == []
    delete_form = GOOD_MERGE.replace("update set c = v.c, d = t.d + v.d", "delete")
    assert merge_problems(delete_form, "redshift") == []


# The literal LIMIT --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 10_001, True, "5", 2.0, None])
def test_limit_must_be_a_small_whole_number(bad: object) -> None:
    with pytest.raises(SqlTextError, match="limit"):
        validate_limit(bad)  # type: ignore[arg-type]
    with pytest.raises(SqlTextError, match="limit"):
        WarehouseSql("cognito_sync", "redshift").bulk_publish_attempts(bad)  # type: ignore[arg-type]


def test_bulk_publish_attempts_places_its_limit_as_a_literal() -> None:
    statement = WarehouseSql("cognito_sync", "redshift").bulk_publish_attempts(50)
    limit = parse(statement, "redshift").find(exp.Limit)
    assert limit is not None and limit.expression.sql() == "50"
    assert statement.count("%s") == 1  # the pool, bound


# Wide columns through work tables ---------------------------------------------------------------------------

#: varchar(65535) columns of the stage. Redshift sizes sort and hash buffers and temporary tables by declared
#: widths: a work table or a sort carries them only where the value itself is needed.
WIDE = {"record_value", "detail"}
#: The work tables that need the value: the MERGE source (a table, AWS's form) and, for datasets with deletes,
#: the candidates whose winner becomes that source.
NEED_THE_VALUE = {"stg_winners", "stg_candidates"}


def _work_tables(engine: str) -> dict[str, exp.Expr]:
    out = {}
    for name, statement in every_statement(engine).items():  # type: ignore[arg-type]
        if name.startswith("load.sql:create_") and " as\nselect" in statement:
            tree = parse(statement, engine)  # type: ignore[arg-type]
            assert isinstance(tree, exp.Create), name
            out[tree.this.name] = tree
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_work_tables_carry_the_value_only_where_needed(engine: str) -> None:
    tables = _work_tables(engine)
    assert {"stg_versions", "stg_winners", "stg_datasets"} <= set(tables)
    for table, tree in tables.items():
        select = tree.expression
        columns = {e.alias_or_name for e in select.expressions}
        if table not in NEED_THE_VALUE:
            assert not columns & WIDE, f"{table} carries {columns & WIDE}"
        # No star anywhere: a star carries every column of the stage through the sort below it.
        assert not list(select.find_all(exp.Star)), f"{table} selects *"


def test_the_version_sort_does_not_carry_the_value() -> None:
    versions = _work_tables("redshift")["stg_versions"]
    windows = list(versions.find_all(exp.Window))
    assert windows
    sorted_select = windows[0].find_ancestor(exp.Select)
    assert sorted_select is not None
    carried = {e.alias_or_name for e in sorted_select.expressions}
    assert not carried & WIDE and "value_ref" not in carried
