"""P2: approved invoices end to end at a realistic Spectrum latency (printed, never asserted).

A seeded world whose customers, sites and jobs are synced first by the same worker (not timed),
then ``--invoices`` ``sync.invoice`` tasks are queued at once with the Spectrum simulator
answering after ``--latency-ms``; the clock runs until every invoice's ledger row is final. The
lower bound is what the Spectrum calls cost if ``--concurrency`` of them were always in flight:
``calls x latency / concurrency``; the ratio wall / bound says how close the pipeline gets.
With ``--st-latency-ms`` the ServiceTrade calls cost time too: ``lower_bound_all_calls_s`` adds
``ServiceTrade calls x their latency / pool processes`` to the Spectrum bound (``ratio_all_calls``).

Real processes: a private Redis, both simulators on loopback, one Celery worker with
``--concurrency`` pool processes, a SQLite ledger. ``--max-in-flight`` is the per-connection cap
on concurrent Spectrum writes (``connections.<name>.max_in_flight``, default 2 in production
config); the bench sets it to the concurrency unless told otherwise.

    ./.venv/bin/python -m bench.end_to_end [--invoices 1000] [--latency-ms 100] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.stack import SOAK_RELIABILITY, Stack, start_stack
from sandbox.seed import SeedSpec, build_world


def spec_with_invoices(n: int, seed: int = 11) -> SeedSpec:
    """The smallest world with ``n`` approved invoices (every completed job invoiced) and some
    spare, since invoices whose job fails by design (unmapped service line) are left out."""
    companies = max(3, n // 2)
    while True:
        spec = SeedSpec(
            seed=seed, companies=companies, invoices_fraction=1.0, timecard_days=0, techs=2
        )
        world = build_world(spec)
        pending = sum(
            1 for i in world.servicetrade["invoice"] if i["status"] == "pending_accounting"
        )
        if pending >= n * 1.15:
            return spec
        companies += max(1, companies // 10)


def _cpu_s(stack: Stack) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the Celery workers (with their pool
    processes), by this process (both simulators and the harness) and by the private Redis."""
    import psutil

    def tree(pid: int) -> float:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
        return total

    own = psutil.Process().cpu_times()
    return {
        "workers": sum(tree(w.pid) for w in stack.workers.values()),
        "simulators_and_harness": own.user + own.system,
        "redis": tree(stack.redis.proc.pid) if stack.redis.proc else 0.0,
    }


def _final(stack: Stack, record_type: str, ids: list[int]) -> int:
    from worker.ledger import TERMINAL

    rows = stack.ledger.get_many("main", record_type, [str(i) for i in ids])
    return sum(1 for r in rows.values() if r.status in TERMINAL)


def _maybe_final(stack: Stack, record_type: str, n: int) -> bool:
    """False while fewer than ``n`` rows of the type are final: one grouped count (~0.4 ms),
    where reading the rows costs ~7 ms of this process's CPU, which both simulators share."""
    from worker.ledger import TERMINAL

    terminal = {s.value for s in TERMINAL}
    counts: dict[tuple[str, str], int] = stack.ledger.counts("main")
    final = sum(v for (t, status), v in counts.items() if t == record_type and status in terminal)
    return final >= n


def _wait_final(stack: Stack, record_type: str, ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    n = len(ids)
    while not _maybe_final(stack, record_type, n) or _final(stack, record_type, ids) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{record_type}: {_final(stack, record_type, ids)}/{len(ids)} "
                f"final after {timeout:.0f}s"
            )
        time.sleep(0.25)


def run_end_to_end(
    invoices: int,
    latency_ms: float,
    concurrency: int,
    max_in_flight: int,
    timeout: float,
    *,
    st_latency_ms: float = 0.0,
    workers: int = 1,
) -> dict[str, Any]:
    """``workers`` Celery worker instances of ``concurrency`` pool processes each; the bound
    counts every pool process (``workers x concurrency``) in flight, capped by max_in_flight."""
    from sandbox.faults import FaultConfig
    from worker.celery_app import app
    from worker.ledger import Status

    spec = spec_with_invoices(invoices)
    with tempfile.TemporaryDirectory(prefix="stsync-p2-") as d:
        stack = start_stack(
            Path(d),
            spec=spec,
            reliability=SOAK_RELIABILITY,
            connection={"max_in_flight": max_in_flight},
            ingest=False,
        )
        try:
            world = stack.sandbox.world
            candidates = [
                i for i in world.servicetrade["invoice"] if i["status"] == "pending_accounting"
            ]
            job_ids = sorted({i["job"]["id"] for i in candidates})
            for n in range(1, workers + 1):
                stack.start_worker(f"w{n}", concurrency=concurrency)
            t0 = time.monotonic()
            for j in job_ids:
                app.send_task("sync.job", args=(j, "main"))
            _wait_final(stack, "job", job_ids, timeout)
            presync_s = time.monotonic() - t0
            done_jobs = {
                int(r.key.source_id)
                for r in stack.ledger.get_many("main", "job", [str(j) for j in job_ids]).values()
                if r.status is Status.DONE
            }
            chosen = [i["id"] for i in candidates if i["job"]["id"] in done_jobs][:invoices]
            stack.sandbox.spectrum_injector.configure(FaultConfig(latency_ms=latency_ms))
            if st_latency_ms:
                stack.sandbox.st_injector.configure(FaultConfig(latency_ms=st_latency_ms))
            sp0 = Counter(stack.sandbox.spectrum_injector.calls)
            st0 = Counter(stack.sandbox.st_injector.calls)
            load0 = os.getloadavg()
            cpu0 = _cpu_s(stack)
            t1, t1_clock = time.monotonic(), time.time()
            for i in chosen:
                app.send_task("sync.invoice", args=(i, "main"))
            _wait_final(stack, "invoice", chosen, timeout)
            polled = time.monotonic() - t1
            # until the last invoice's row turned final (its ledger time, same machine's clock),
            # not until the poll that saw it: the poll every 0.25 s added up to 0.25 s
            rows = stack.ledger.get_many("main", "invoice", [str(i) for i in chosen]).values()
            last = max(r.updated_at.timestamp() for r in rows)
            wall = min(polled, max(last - t1_clock, 0.001))
            cpu = {k: v - cpu0[k] for k, v in _cpu_s(stack).items()}
            sp = Counter(stack.sandbox.spectrum_injector.calls) - sp0
            st = Counter(stack.sandbox.st_injector.calls) - st0
            outcomes = Counter(r.status.value for r in rows)
            calls = sum(sp.values())
            in_flight = min(workers * concurrency, max_in_flight)
            bound = calls * latency_ms / 1000 / in_flight
            st_calls = sum(st.values())
            # every call a task waits on, at its system's latency: with ServiceTrade latency
            # injected, the ServiceTrade reads and writes are part of what a task must wait for
            bound_all = bound + st_calls * st_latency_ms / 1000 / (workers * concurrency)
            posted = outcomes.get("done", 0)
            return {
                "invoices": len(chosen),
                "outcomes": dict(outcomes),
                "jobs_presynced": len(job_ids),
                "presync_s": round(presync_s, 1),
                "wall_s": round(wall, 2),
                "wall_polled_s": round(polled, 2),
                "spectrum_calls": dict(sp),
                "servicetrade_calls": dict(st),
                "lower_bound_s": round(bound, 1),
                "ratio": round(wall / bound, 2) if bound else None,
                "lower_bound_all_calls_s": round(bound_all, 1),
                "ratio_all_calls": round(wall / bound_all, 2) if bound_all else None,
                "invoices_per_s": round(len(chosen) / wall, 1),
                "servicetrade_calls_per_invoice": round(st_calls / len(chosen), 2),
                "servicetrade_calls_per_posted_invoice": round(st_calls / posted, 2)
                if posted
                else None,
                "latency_ms": latency_ms,
                "st_latency_ms": st_latency_ms,
                "workers": workers,
                "concurrency": concurrency,
                "max_in_flight": max_in_flight,
                # where the time goes: CPU seconds of the timed part, per invoice
                "cpu_ms_per_invoice": {k: round(v * 1000 / len(chosen), 1) for k, v in cpu.items()},
                "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
                "load_before": [round(x, 2) for x in load0],
                "load_after": [round(x, 2) for x in os.getloadavg()],
            }
        finally:
            stack.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.end_to_end", description=__doc__.split("\n")[0]
    )
    p.add_argument("--invoices", type=int, default=1000)
    p.add_argument("--latency-ms", type=float, default=100.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        help="per-connection Spectrum write cap (default: the concurrency)",
    )
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument(
        "--st-latency-ms",
        type=float,
        default=0.0,
        help="ServiceTrade latency injected for the timed part (0: none)",
    )
    p.add_argument("--workers", type=int, default=1, help="Celery worker instances")
    args = p.parse_args(argv)
    print(f"load average before: {[round(x, 2) for x in os.getloadavg()]}")
    out = run_end_to_end(
        args.invoices,
        args.latency_ms,
        args.concurrency,
        args.max_in_flight or args.concurrency,
        args.timeout,
        st_latency_ms=args.st_latency_ms,
        workers=args.workers,
    )
    for k, v in out.items():
        print(f"{k:>18}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
