"""The benchmark harness's own logic: ratios, goals, and how end-to-end freshness is computed."""

from __future__ import annotations

import pytest

from bench.bench_e2e import Freshness, Watcher
from bench.harness import Figure


@pytest.mark.parametrize(
    ("value", "baseline", "higher_is_better", "ratio"),
    [(70.0, 10.0, True, 7.0), (6.0, 60.0, False, 10.0), (712.0, 700.0, False, 700 / 712)],
)
def test_ratio_above_one_means_we_are_better(
    value: float, baseline: float, higher_is_better: bool, ratio: float
) -> None:
    # GIVEN a figure and its baseline WHEN the ratio is computed THEN it is oriented so that > 1 is better
    figure = Figure("f", value, "u", higher_is_better=higher_is_better, baseline="b", baseline_value=baseline)
    assert figure.ratio == pytest.approx(ratio)


@pytest.mark.parametrize(
    ("goal", "value", "baseline", "higher_is_better", "met"),
    [
        (">= 7x", 70.0, 10.0, True, True),
        (">= 7x", 60.0, 10.0, True, False),
        (">= 0.67x (within 1.5x)", 60.0, 100.0, True, False),
        ("< 30 s", 12.0, 60.0, False, True),
        ("< 90 s", 95.0, 60.0, False, False),
        ("about 1x: bounded by the batch settings", 712.0, 700.0, False, True),
        ("about 1x (flat as the warehouse grows)", 300.0, 150.0, False, False),
        ("ratio >= 0.33 (within 3x of the floor)", 5.0, 0.4, False, False),
        ("ratio > 1 (faster than (b))", 4.0, 5.0, False, True),
        ("< 1.5x", 1.4, None, False, True),
        ("no number here", 1.0, None, True, None),
    ],
)
def test_goal_met(goal: str, value: float, baseline: float | None, higher_is_better: bool, met: bool | None) -> None:
    # GIVEN a figure with a goal WHEN it is judged THEN the goal's number is compared with the ratio or the value
    figure = Figure("f", value, "u", higher_is_better=higher_is_better, baseline_value=baseline, goal=goal)
    assert figure.goal_met() is met
    assert figure.as_dict().get("goal_met") is met


def _watcher(history: dict[tuple[str, str], list[tuple[float, int]]]) -> Watcher:
    watcher = Watcher("dsn", "schema", "pool")  # never started: the history is given
    watcher.seen.update(history)
    return watcher


def test_freshness_is_the_first_poll_that_shows_the_sync_count() -> None:
    # GIVEN updates of one dataset at t=0, 1, 2 (sync counts 1, 2, 3, four changes each), and a watcher
    # that saw sync count 2 at t=5 and 3 at t=9
    updates = [("id", "ds", 1, 0.0, 4), ("id", "ds", 2, 1.0, 4), ("id", "ds", 3, 2.0, 4)]
    watcher = _watcher({("id", "ds"): [(5.0, 2), (9.0, 3)]})
    # WHEN freshness is computed
    fresh = Freshness.of(updates, watcher)
    # THEN sync 1 became visible with sync 2 (a later version covers it), sync 3 at t=9
    assert fresh.seconds == [4.0] * 4 + [5.0] * 4 + [7.0] * 4
    assert fresh.changes == 12 and fresh.missing == 0
    assert fresh.pct(0.5) == 5.0 and fresh.pct(0.95) == 7.0
    assert fresh.rate == pytest.approx(12 / 9.0)
    assert fresh.drain_seconds == pytest.approx(7.0)
    assert watcher.caught_up(updates)


def test_a_change_never_seen_is_missing() -> None:
    # GIVEN a second dataset the watcher never saw
    updates = [("id", "ds", 1, 0.0, 4), ("id", "other", 1, 0.5, 4)]
    watcher = _watcher({("id", "ds"): [(3.0, 1)]})
    # WHEN freshness is computed THEN its changes count as missing, and the run is not caught up
    fresh = Freshness.of(updates, watcher)
    assert fresh.missing == 4 and fresh.seconds == [3.0] * 4
    assert not watcher.caught_up(updates)
