"""The benchmark harness: figures, the shared context, results.json and the printed table.

A benchmark module is ``bench/bench_<topic>.py`` with ``def run(ctx: BenchContext) -> list[Figure]``.
Each figure compares ours with a baseline measured in the same run, on the same machine, where a
baseline exists; ``ratio`` is oriented so that above 1 means we are better.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Figure:
    """One measured number, with its baseline from the same run when there is one."""

    name: str
    value: float
    unit: str
    higher_is_better: bool = True
    baseline: str | None = None
    baseline_value: float | None = None
    goal: str | None = None
    note: str | None = None
    ratio: float | None = field(default=None)

    def __post_init__(self) -> None:
        if self.baseline_value is not None and self.ratio is None and self.value and self.baseline_value:
            self.ratio = self.value / self.baseline_value if self.higher_is_better else self.baseline_value / self.value

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of results.json (fields that are None left out), with ``goal_met``."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        met = self.goal_met()
        if met is not None:
            out["goal_met"] = met
        return out

    def goal_met(self) -> bool | None:
        """Whether the goal is met, for the goal forms used here (None when the goal says no number):
        ``>= 7x`` / ``ratio >= 0.33`` / ``ratio > 1`` compare the ratio; ``< 30 s`` / ``< 1.5x`` compare
        the value; ``about 1x`` means a ratio of at least 1/1.5 (no more than 1.5x worse)."""
        if not self.goal:
            return None
        goal = self.goal.strip()
        if goal.startswith("about 1x"):
            return None if self.ratio is None else self.ratio >= 1 / 1.5
        match = _GOAL.match(goal)
        if match is None:
            return None
        op, number = match["op"], float(match["n"])
        on_ratio = bool(match["ratio"] or match["x"]) and not goal.startswith("<")
        subject = self.ratio if on_ratio else self.value
        if subject is None:
            return None
        return {">=": subject >= number, ">": subject > number, "<": subject < number, "<=": subject <= number}[op]


_GOAL = re.compile(r"^(?P<ratio>ratio\s*)?(?P<op>>=|<=|>|<)\s*(?P<n>[0-9.]+)\s*(?P<x>x)?")


class BenchContext:
    """What a benchmark may use: the mode, a scratch folder, and the local stack (started once,
    on free ports, only if a benchmark asks for it)."""

    def __init__(self, full: bool, workdir: Path) -> None:
        self.full = full
        self.workdir = workdir
        self._stack: Any = None

    def scale(self, quick: int, full: int) -> int:
        """A size for this mode."""
        return full if self.full else quick

    def stack(self, emulator: bool = True) -> Any:
        """The local stack (moto, PostgreSQL and, unless told otherwise, the emulator), exported
        to this process's environment."""
        if self._stack is None:
            from local.procs import free_port
            from local.stack import Stack, StackConfig

            cfg = StackConfig(
                state_dir=self.workdir / "stack",
                moto_port=free_port(),
                emulator_port=free_port(),
                pg_port=free_port(),
                airflow_port=free_port(),
            )
            self._stack = Stack(cfg)
            _start_fast_moto(self._stack)
            env = self._stack.up(migrate=False, emulator=emulator, redshift=False)
            os.environ.update(env)
        elif emulator:
            self._stack.emulator.ensure_running()
        return self._stack

    def close(self) -> None:
        if self._stack is not None:
            self._stack.down()


def _start_fast_moto(stack: Any) -> None:
    """Start the stack's moto as ``bench.fastmoto`` (O(1) Kinesis appends and reads, see there) under
    the stack's pid file, so that ``Stack.up`` finds it running and ``Stack.down`` stops it."""
    from local.procs import http_ok, start_detached, wait_until

    cfg = stack.cfg
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")])}
    pid = start_detached(
        [sys.executable, "-m", "bench.fastmoto", str(cfg.moto_port)],
        pid_file=stack.moto.pid_file,
        log_file=stack.moto.log_file,
        env=env,
        cwd=REPO,
    )
    url = f"{cfg.aws_endpoint}/moto-api/data.json"
    wait_until(
        lambda: http_ok(url, timeout=2.0), timeout=60, what="bench moto server", log=stack.moto.log_file, pid=pid
    )


def timed(fn: Callable[[], Any], repeat: int = 1, clock: Callable[[], float] = time.perf_counter) -> float:
    """Best time of ``repeat`` calls, in seconds: wall time, or ``clock``'s (e.g. ``time.thread_time`` for
    the calling thread's CPU time)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


@contextlib.contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Peak resident memory (MiB) of this process while the block runs, sampled every 10 ms."""
    import psutil

    proc = psutil.Process()
    out = {"peak_mib": 0.0, "start_mib": proc.memory_info().rss / 2**20}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            out["peak_mib"] = max(out["peak_mib"], proc.memory_info().rss / 2**20)
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["peak_mib"] = max(out["peak_mib"], proc.memory_info().rss / 2**20)


def machine() -> dict[str, Any]:
    """Where the numbers come from."""
    versions = {}
    for dist in ("apache-airflow", "pyarrow", "orjson", "pandas", "psycopg", "moto", "boto3"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git_commit(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "max_rss_mib_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "versions": versions,
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def _git_commit() -> str | None:
    import subprocess

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if out.returncode == 0:
            return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    return None


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="cs-bench-"))


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
