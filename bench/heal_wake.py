"""Waking the records that waited on a prerequisite, among many failed rows.

After every first landing of a customer, site or job (``heal.after_sync``), on every ServiceTrade
``user`` webhook (``heal.user_changed``) and in every missed-change sweep (``heal.waited_users``)
stsync looks up the failed records that wait on it. The ledger holds ``--failed`` failed rows of
one connection, ``--waiting`` of them failed for a missing prerequisite (spread over jobs and
users), the rest for other reasons (a mapping error, say: they wait for a person). Prints the
time of one ``waiting_on`` (a job's waiters) and one ``waited_users`` call, averaged over
``--lookups`` calls, with the load average.

    ./.venv/bin/python -m bench heal_wake [--failed 5000] [--waiting 500] [--lookups 200]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

STATE = {"heal": {"updated": 1_765_000_000, "digest": "d" * 40, "config": "c" * 40}}


def fill(led: Any, failed: int, waiting: int) -> None:
    """``failed`` failed rows; every ``failed // waiting``-th waits on a job or a user."""
    from worker.ledger import PREREQUISITE, RecordKey, Status

    every = max(1, failed // max(waiting, 1))
    for i in range(failed):
        key = RecordKey("main", "timecard_entry", f"{i}:1")
        led.claim(key, lease_s=60)
        if waiting and i % every == 0:
            j = i // every  # the waiters alternate between jobs and users
            target = f"job:{j % 97}" if j % 2 else f"user:{j % 89}"
            state, kind = {**STATE, "waits_on": target}, PREREQUISITE
        else:
            state, kind = dict(STATE), "MappingError"
        led.mark(key, Status.FAILED, error_kind=kind, reason="r" * 200, state=state)


def run(failed: int, waiting: int, lookups: int, database_url: str | None) -> dict[str, Any]:
    from tasks.heal import waited_users, waiting_on
    from worker.ledger import Ledger, RecordKey

    with tempfile.TemporaryDirectory(prefix="stsync-wake-") as d:
        led = Ledger(database_url or f"sqlite:///{Path(d) / 'ledger.sqlite'}")
        led.migrate()
        try:
            fill(led, failed, waiting)
            ctx = SimpleNamespace(ledger=led)
            load = os.getloadavg()
            t = time.perf_counter()
            found = 0
            for n in range(lookups):
                found += len(waiting_on(ctx, RecordKey("main", "job", str(n % 97))))  # type: ignore[arg-type]
            per_job = (time.perf_counter() - t) / lookups
            t = time.perf_counter()
            for _ in range(lookups):
                users = waited_users(ctx, "main")  # type: ignore[arg-type]
            per_sweep = (time.perf_counter() - t) / lookups
            return {
                "failed_rows": failed,
                "waiting_rows": waiting,
                "waiting_on_ms": round(per_job * 1000, 2),
                "waiters_per_job": round(found / lookups, 1),
                "waited_users_ms": round(per_sweep * 1000, 2),
                "users_waited_on": len(users),
                "load_before": [round(x, 2) for x in load],
                "load_after": [round(x, 2) for x in os.getloadavg()],
            }
        finally:
            led.dispose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench heal_wake", description=__doc__.split("\n")[0]
    )
    p.add_argument("--failed", type=int, default=5000)
    p.add_argument("--waiting", type=int, default=500)
    p.add_argument("--lookups", type=int, default=200)
    p.add_argument("--database-url", default=None, help="default: a SQLite file in a temp dir")
    args = p.parse_args(argv)
    for k, v in run(args.failed, args.waiting, args.lookups, args.database_url).items():
        print(f"{k:>18}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
