"""Scale-out: invoices/s with 1, 2 and 4 worker processes, side by side (printed, never asserted).

Each run is ``bench.end_to_end`` on a fresh stack: ``N`` Celery worker instances of
``--concurrency`` pool processes each (as ``docker compose up --scale worker=N`` or workers on
several machines run them), the Spectrum simulator answering after ``--latency-ms`` and
``max_in_flight`` raised to ``--max-in-flight`` so the cap is not what limits. Throughput should
grow with the workers until the CPU (2 cores here, shared) or the cap stops it; the ideal is
``min(N x concurrency, max_in_flight) / latency`` invoices per second for the Spectrum part.

    ./.venv/bin/python -m bench.scale [--workers 1 2 4] [--invoices 300] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench.end_to_end import run_end_to_end


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--concurrency", type=int, default=1, help="pool processes per worker")
    p.add_argument("--invoices", type=int, default=300)
    p.add_argument("--latency-ms", type=float, default=100.0)
    p.add_argument("--max-in-flight", type=int, default=16)
    p.add_argument("--timeout", type=float, default=1800.0)
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for n in args.workers:
        load0 = [round(x, 2) for x in os.getloadavg()]
        out = run_end_to_end(
            args.invoices,
            args.latency_ms,
            args.concurrency,
            args.max_in_flight,
            args.timeout,
            workers=n,
        )
        out["load_before_run"] = load0
        rows.append(out)
        print(
            f"{n} worker(s): {out['invoices_per_s']} invoices/s, wall {out['wall_s']} s, "
            f"ratio to bound {out['ratio']}, load {load0} -> {out['load_after']}",
            flush=True,
        )
    print()
    print(
        f"{'worker processes':>18} | {'invoices/s':>10} | {'ideal/s':>8} | {'wall s':>7} | "
        f"{'x 1 worker':>10} | load before -> after"
    )
    base = rows[0]["invoices_per_s"] if rows else 0
    for r in rows:
        n = r["workers"] * r["concurrency"]
        ideal = min(n, r["max_in_flight"]) / (r["latency_ms"] / 1000)
        print(
            f"{n:>18} | {r['invoices_per_s']:>10} | {ideal:>8.0f} | {r['wall_s']:>7} | "
            f"{r['invoices_per_s'] / base if base else 0:>10.2f} | {r['load_before_run']} -> "
            f"{r['load_after']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
