"""``python -m bench``: list the benchmarks; ``python -m bench NAME [args]`` runs one.

Every benchmark prints its figures and asserts nothing; docs/performance.md and
docs/reliability.md give the figures with the commands that produced them.
"""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "ingest": "P1 webhook ingest: events/s and p50/p99 latency, batched deliveries",
    "end_to_end": "P2 1,000 approved invoices at 100 ms Spectrum latency vs the lower bound",
    "scale": "invoices/s with 1, 2 and 4 worker processes at 100 ms Spectrum, side by side",
    "calls": "P3 external calls per record in steady state (simulator counters)",
    "catch_up": "P4 weekly timecard catch-up over ~50,000 entries, 95 % synced",
    "chaos": "R1 chaos soak: every record exactly once under faults and crashes",
    "sandbox_throughput": "the simulators' own request rate on loopback",
    "heal_wake": "the records waiting on a prerequisite, found among many failed rows",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "list"):
        print(__doc__.strip().splitlines()[0])
        for name, what in BENCHES.items():
            print(f"  {name:<20} {what}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BENCHES:
        print(f"unknown benchmark {name!r}; one of: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name}")
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
