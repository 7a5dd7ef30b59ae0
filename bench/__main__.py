"""``make bench``: run every ``bench/bench_*.py``, print a table, write ``bench/results.json``.

python -m bench                 quick mode (small sizes; what CI smoke-runs)
python -m bench --full          the sizes quoted in the README
python -m bench --only merge    the modules whose name contains "merge"
"""

from __future__ import annotations

import argparse
import importlib
import json
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


def print_table(figures: list[Figure]) -> None:
    """A readable table: each figure beside its baseline and the ratio."""
    rows = [("figure", "value", "unit", "baseline", "baseline value", "ratio", "goal")]
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
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


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
    started = time.time()
    try:
        for name in modules:
            print(f"== {name} ({'full' if args.full else 'quick'} mode)", flush=True)
            t0 = time.perf_counter()
            try:
                module = importlib.import_module(f"bench.{name}")
                got = module.run(ctx)
            except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others' numbers
                traceback.print_exc()
                failures.append(name)
                continue
            figures.extend(got)
            print_table(got)
            print(f"   ({time.perf_counter() - t0:.1f} s)\n", flush=True)
    finally:
        ctx.close()
        cleanup(workdir)

    result = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "full" if args.full else "quick",
        "duration_s": round(time.time() - started, 1),
        "machine": machine(),
        "figures": [f.as_dict() for f in figures],
        "failed_modules": failures,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("== all figures")
    print_table(figures)
    print(f"\nwritten {args.out}")
    if failures:
        print(f"FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
