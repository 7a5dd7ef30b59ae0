"""Pure parts of the loader: grouping batches into transactions, landing days, and the manual-run Params."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cognito_streams.core.loading.params import LoadParams, LoadParamsError
from cognito_streams.core.loading.plan import landing_day, plan_groups


@given(sizes=st.lists(st.integers(1, 4), max_size=40), bound=st.integers(1, 10))
def test_groups_keep_order_and_bound_files(sizes: list[int], bound: int) -> None:
    groups = plan_groups(list(enumerate(sizes)), bound, lambda item: item[1])
    assert [item for g in groups for item in g] == list(enumerate(sizes))  # nothing lost, order kept
    for g in groups:
        # a group exceeds the bound only when a single batch alone does
        assert sum(n for _, n in g) <= bound or len(g) == 1


def test_group_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_groups([1], 0, lambda n: n)


def test_landing_day_from_the_dt_partition() -> None:
    assert landing_day("p/batches/stream=s/dt=2026-03-01/shardId-0/1-2.json") == date(2026, 3, 1)
    assert landing_day("p/batches/stream=s/2026-03-01/x.json") is None
    assert landing_day("p/batches/stream=s/dt=2026-13-01/x.json") is None


def test_params_default_to_a_scheduled_load() -> None:
    assert LoadParams.parse(None) == LoadParams()
    assert LoadParams.parse({"mode": "load", "from_day": None, "to_day": "", "force": False}) == LoadParams()


def test_params_for_a_forced_reload_of_a_day_range() -> None:
    p = LoadParams.parse({"from_day": "2026-03-01", "to_day": "2026-03-02", "force": "true"})
    assert (p.mode, p.day_from, p.day_to, p.force) == ("load", date(2026, 3, 1), date(2026, 3, 2), True)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": "reload"}, "use one of"),
        ({"from_day": "01/03/2026"}, "YYYY-MM-DD"),
        ({"from_day": "2026-03-02", "to_day": "2026-03-01"}, "swap them"),
        ({"force": True}, "give from_day"),
        ({"mode": "rebuild", "from_day": "2026-03-01"}, "leave from_day"),
    ],
)
def test_inconsistent_params_say_what_to_do(params: dict[str, object], message: str) -> None:
    with pytest.raises(LoadParamsError, match=message):
        LoadParams.parse(params)
