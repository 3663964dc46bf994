"""P4: the weekly timecard catch-up over ~50,000 entries, 95 % already synced (printed only).

A seeded ServiceTrade simulator with 999 technicians x 22 days of approved timecards (~22,000
cards, ~50,000 entries) and a ledger in which 95 % of the entries are already ``done`` (every
20th is not). The jobs the entries are on are synced first (not timed). Then
``tasks.timecard.run_catch_up`` runs inline, as ``stsync catch-up`` does, in a *child process*
so that its peak RSS is its own: it pages through every card, skips the settled entries with one
ledger query per page and posts the rest. Printed: wall time, Spectrum calls (from the
simulator's counters), the catch-up summary and the child's peak RSS.

    ./.venv/bin/python -m bench.catch_up [--techs 999] [--days 22] [--synced 0.95]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.stack import REPO, SOAK_RELIABILITY, start_stack
from sandbox.seed import SeedSpec


def peak_rss_mb() -> float:
    """This process's own peak RSS: ``VmHWM`` (Linux resets it at exec). ``ru_maxrss`` is not
    used: Linux carries the forking parent's high-water mark into it across the exec, so it
    reported the benchmark harness (the whole simulated world) instead of the catch-up."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(since: str, until: str) -> None:
    """Run the catch-up in this process and print its summary, wall time and peak RSS."""
    from tasks.timecard import run_catch_up
    from worker.context import attach_read_cache, build_context
    from worker.settings import load_settings

    trace = os.environ.get("STSYNC_BENCH_TRACEMALLOC") == "1"
    if trace:
        import tracemalloc

        tracemalloc.start(8)
    ctx = build_context(load_settings())
    attach_read_cache(ctx)  # as `stsync catch-up` does
    if trace:
        rss = peak_rss_mb()
        print(f"peak RSS before the run: {rss:.1f} MB", file=sys.stderr)
    started = time.perf_counter()
    samples: list[tuple[int, float]] = []

    def progress(done: int, _total: int) -> None:
        if trace and (done in (1, 2, 50, 200, 201) or done % 1000 == 0):
            samples.append((done, peak_rss_mb()))

    summary = run_catch_up(
        ctx, datetime.fromisoformat(since), datetime.fromisoformat(until), progress
    )
    wall = time.perf_counter() - started
    if trace:
        print(f"peak RSS (MB) by cards done: {samples}", file=sys.stderr)
        snap = tracemalloc.take_snapshot()
        _, peak = tracemalloc.get_traced_memory()
        print(f"tracemalloc peak {peak / 2**20:.1f} MB; largest live allocations:", file=sys.stderr)
        for stat in snap.statistics("traceback")[:8]:
            print(f"{stat.size / 2**20:8.1f} MB {stat.count:>8}", file=sys.stderr)
            for line in stat.traceback.format()[-8:]:
                print(f"    {line}", file=sys.stderr)
    ctx.close()
    print(
        json.dumps(
            {
                "wall_s": round(wall, 1),
                "summary": summary.as_dict(),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        )
    )


def _mark_synced(ledger: Any, world: Any, share: float) -> tuple[int, int]:
    """Ledger rows ``done`` for all entries but every n-th; returns (entries, marked)."""
    from sqlalchemy import insert

    from mappers.timecard import entry_marker, entry_source_id
    from worker.ledger import sync_record, utcnow

    every = round(1 / (1 - share)) if share < 1 else 0
    now = utcnow()
    rows: list[dict[str, Any]] = []
    n = 0
    for tc in world.servicetrade["timecard"]:
        for e in tc["entries"]:
            n += 1
            if every and n % every == 0:
                continue
            rows.append(
                {
                    "connection": "main",
                    "record_type": "timecard_entry",
                    "source_id": entry_source_id(tc["id"], e["id"]),
                    "status": "done",
                    "spectrum_key": entry_marker(tc["id"], e["id"]),
                    "state": {"posted": True},
                    "attempts": 1,
                    "crashes": 0,
                    "created_at": now,
                    "updated_at": now,
                    "done_at": now,
                }
            )
    with ledger.engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            conn.execute(insert(sync_record), rows[i : i + 5000])
    return n, len(rows)


def run_catch_up_bench(
    techs: int, days: int, synced: float, profile_to: str | None = None
) -> dict[str, Any]:
    from tasks.job import sync_job

    spec = SeedSpec(companies=10, techs=techs, timecard_days=days)
    with tempfile.TemporaryDirectory(prefix="stsync-p4-") as d:
        t_setup = time.monotonic()
        stack = start_stack(Path(d), spec=spec, reliability=SOAK_RELIABILITY, ingest=False)
        try:
            world = stack.sandbox.world
            ctx = stack.context()
            try:
                job_ids = sorted(
                    {
                        e["job"]["id"]
                        for tc in world.servicetrade["timecard"]
                        for e in tc["entries"]
                        if e.get("job")
                    }
                )
                for j in job_ids:
                    sync_job(ctx, j, "main")
            finally:
                ctx.close()
            entries, marked = _mark_synced(stack.ledger, world, synced)
            approvals = [int(tc["approvedOn"]) for tc in world.servicetrade["timecard"]]
            since = datetime.fromtimestamp(min(approvals) - 3600, UTC).isoformat()
            until = datetime.fromtimestamp(max(approvals) + 3600, UTC).isoformat()
            setup_s = time.monotonic() - t_setup
            sp0 = Counter(stack.sandbox.spectrum_injector.calls)
            st0 = Counter(stack.sandbox.st_injector.calls)
            load0 = os.getloadavg()
            started = time.monotonic()
            profile = ["-m", "cProfile", "-o", profile_to] if profile_to else []
            proc = subprocess.run(
                [sys.executable, *profile, "-m", "bench.catch_up", "--child", since, until],
                cwd=REPO,
                env=stack.env,
                capture_output=True,
                text=True,
                check=False,
                timeout=3600,
            )
            wall = time.monotonic() - started
            if proc.returncode != 0:
                raise RuntimeError(f"catch-up child failed:\n{proc.stderr[-3000:]}")
            if os.environ.get("STSYNC_BENCH_TRACEMALLOC") == "1":
                print(proc.stderr[-12000:])
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            sp = Counter(stack.sandbox.spectrum_injector.calls) - sp0
            st = Counter(stack.sandbox.st_injector.calls) - st0
            return {
                "timecards": len(world.servicetrade["timecard"]),
                "entries": entries,
                "already_synced_in_ledger": marked,
                "setup_s": round(setup_s, 1),
                "wall_s_incl_start": round(wall, 1),
                "catch_up_wall_s": result["wall_s"],
                "spectrum_calls": dict(sp),
                "servicetrade_calls": sum(st.values()),
                "servicetrade_calls_by_resource": dict(st),
                "child_peak_rss_mb": result["peak_rss_mb"],
                "summary": result["summary"],
                "load_before": [round(x, 2) for x in load0],
                "load_after": [round(x, 2) for x in os.getloadavg()],
            }
        finally:
            stack.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.catch_up", description=__doc__.split("\n")[0])
    p.add_argument("--child", nargs=2, metavar=("SINCE", "UNTIL"), help=argparse.SUPPRESS)
    p.add_argument("--techs", type=int, default=999)
    p.add_argument("--days", type=int, default=22)
    p.add_argument("--synced", type=float, default=0.95)
    p.add_argument(
        "--profile",
        default=None,
        metavar="PATH",
        help="run the catch-up child under cProfile, stats written to PATH",
    )
    args = p.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    print(f"load average before: {[round(x, 2) for x in os.getloadavg()]}")
    out = run_catch_up_bench(args.techs, args.days, args.synced, args.profile)
    for k, v in out.items():
        print(f"{k:>32}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
