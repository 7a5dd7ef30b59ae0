"""``make bench``: run every ``bench/bench_*.py``, print a table, write ``bench/results.json``.

python -m bench                 quick mode (small sizes; what CI smoke-runs)
python -m bench --full          the sizes quoted in the README
python -m bench --only merge    the modules whose name contains "merge"
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import BenchContext, Figure, cleanup, machine, scratch

BENCH_DIR = Path(__file__).resolve().parent


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def _met(figure: Figure) -> str:
    met = figure.goal_met()
    return "" if met is None else ("yes" if met else "NO")


def print_table(figures: list[Figure]) -> None:
    """A readable table: each figure beside its baseline, the ratio (above 1: we are better) and the goal."""
    rows = [("figure", "value", "unit", "baseline", "baseline value", "ratio", "goal", "met")]
    for f in figures:
        rows.append(
            (
                f.name,
                _fmt(f.value),
                f.unit,
                f.baseline or "",
                _fmt(f.baseline_value) if f.baseline_value is not None else "",
                f"{f.ratio:.2f}x" if f.ratio is not None else "",
                f.goal or "",
                _met(f),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def print_machine(info: dict[str, object]) -> None:
    """Where the numbers come from, in two lines."""
    versions = info.get("versions") or {}
    assert isinstance(versions, dict)
    print(
        f"machine: {info.get('cpu_model')}, {info.get('cpus')} CPUs, {info.get('memory_gib')} GiB, "
        f"{info.get('platform')}, Python {info.get('python')}; load average now {info.get('load_average_1_5_15_min')}; "
        f"commit {info.get('git_commit')}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--full", action="store_true", help="full sizes (minutes); default is the quick mode")
    parser.add_argument("--only", action="append", default=[], help="run modules whose name contains this")
    parser.add_argument("--out", default=str(BENCH_DIR / "results.json"))
    args = parser.parse_args(argv)

    modules = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    if args.only:
        modules = [m for m in modules if any(o in m for o in args.only)]
    workdir = scratch()
    ctx = BenchContext(full=args.full, workdir=workdir)
    figures: list[Figure] = []
    failures: list[str] = []
    timings: dict[str, dict[str, object]] = {}
    started = time.time()
    print_machine(machine())
    try:
        for name in modules:
            load_before = round(os.getloadavg()[0], 2)
            print(f"== {name} ({'full' if args.full else 'quick'} mode; load average {load_before})", flush=True)
            t0 = time.perf_counter()
            try:
                module = importlib.import_module(f"bench.{name}")
                got = module.run(ctx)
            except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others' numbers
                traceback.print_exc()
                failures.append(name)
                continue
            figures.extend(got)
            seconds = round(time.perf_counter() - t0, 1)
            timings[name] = {"seconds": seconds, "load_average_before": load_before}
            timings[name]["load_average_after"] = round(os.getloadavg()[0], 2)
            print_table(got)
            print(f"   ({seconds} s)\n", flush=True)
    finally:
        ctx.close()
        cleanup(workdir)

    result = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "full" if args.full else "quick",
        "duration_s": round(time.time() - started, 1),
        "machine": machine(),
        "modules": timings,
        "figures": [f.as_dict() for f in figures],
        "failed_modules": failures,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("== all figures")
    print_machine(result["machine"])  # type: ignore[arg-type]
    print_table(figures)
    for f in figures:
        if f.note:
            print(f"  - {f.name}: {f.note}")
    print(f"\nwritten {args.out}")
    if failures:
        print(f"FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
