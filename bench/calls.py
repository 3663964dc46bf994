"""P3: external calls per record in steady state, from the simulators' call counters.

In-process (both simulators as ASGI apps, a real SQLite ledger, the plain ``sync_*`` functions),
so the counts are exact and independent of the machine. Each record type is measured after its
prerequisites are synced and after a warm-up record of the same type (per-process caches such as
the template job's phases are warm), which is the steady state of a running worker:

- customers, sites, jobs (with template phases and the OH batch update), approved invoices,
  approved timecards (per *entry*), and voids of posted invoices.

Target (issue 9): 1 Spectrum call per invoice and per timecard entry.

    ./.venv/bin/python -m bench.calls [--companies 12]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stack import SOAK_RELIABILITY, settings_toml
from sandbox.seed import SeedSpec


@dataclass
class Measure:
    record_type: str
    records: int
    spectrum: Counter[str]
    servicetrade: Counter[str]
    units: int  # what a call is counted per (entries for timecards)

    def line(self) -> str:
        sp = sum(self.spectrum.values())
        st = sum(self.servicetrade.values())
        per = self.units or 1
        detail = ", ".join(f"{k} {v / per:.2f}" for k, v in sorted(self.spectrum.items()))
        st_detail = ", ".join(f"{k} {v / per:.2f}" for k, v in sorted(self.servicetrade.items()))
        return (
            f"{self.record_type:<16} {self.records:>5} rec {self.units:>5} units  "
            f"Spectrum {sp / per:5.2f}/unit [{detail}]  ServiceTrade {st / per:5.2f}/unit "
            f"[{st_detail}]"
        )


def _transport(app: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=False)._transport  # noqa: SLF001


def measure_calls(companies: int = 12, workdir: Path | None = None) -> list[Measure]:
    """Sync a seeded world type by type and count the calls each type makes per record."""
    from sandbox.credentials import demo_environment
    from sandbox.run import in_process_sandbox
    from tasks.customer import sync_customer
    from tasks.invoice import sync_invoice
    from tasks.job import sync_job
    from tasks.site import sync_site
    from tasks.timecard import sync_timecard
    from worker.context import build_context
    from worker.ledger import Ledger
    from worker.readcache import LocalStamps, ReadCache
    from worker.settings import load_settings

    logging.getLogger("stsync").setLevel(logging.ERROR)
    tmpdir = tempfile.TemporaryDirectory(prefix="stsync-calls-") if workdir is None else None
    tmp = Path(tmpdir.name) if tmpdir is not None else workdir
    assert tmp is not None
    try:
        spec = SeedSpec(companies=companies, invoices_fraction=1.0, timecard_days=3)
        sb = in_process_sandbox(spec, db_url=f"sqlite:///{tmp / 'spectrum.sqlite'}")
        env = demo_environment("http://st.sandbox", "http://spectrum.sandbox", sb.spectrum_db.url)
        env.update(
            {
                "DATABASE_URL": f"sqlite:///{tmp / 'ledger.sqlite'}",
                "STSYNC_DATA_DIR": str(tmp / "data"),
            }
        )
        settings = load_settings(settings_toml(tmp, reliability=SOAK_RELIABILITY), env)
        ledger = Ledger(settings.database_url)
        ledger.migrate()
        # the worker's read cache (stamps in-process: nothing edits the world during the run)
        ctx = build_context(
            settings,
            enqueue=lambda name, args: None,
            st_transport=_transport(sb.st_app),
            spectrum_transport=_transport(sb.spectrum_app),
            retry_wait_s=0,
            ledger=ledger,
            read_cache=ReadCache(settings.servicetrade.read_cache_ttl_s, LocalStamps()),
        )
        st = sb.world.servicetrade
        vendors = {c["id"] for c in st["company"] if c.get("isVendor")}
        customers = [c["id"] for c in st["company"] if c["id"] not in vendors]
        locations = [x["id"] for x in st["location"] if x["company"]["id"] not in vendors]
        jobs = [j["id"] for j in st["job"]]
        invoices = [i["id"] for i in st["invoice"] if i["status"] == "pending_accounting"]
        cards = [tc for tc in st["timecard"] if tc["user"]["externalIds"].get("spectrum")]
        out: list[Measure] = []

        def run(
            record_type: str,
            fn: Callable[[Any, int, str], Any],
            ids: Iterable[int],
            units: Callable[[list[int]], int] = len,
        ) -> None:
            todo = list(ids)
            if len(todo) > 1:
                fn(ctx, todo[0], "main")  # warm-up: caches of this record type are filled
                todo = todo[1:]
            sp0, st0 = Counter(sb.spectrum_injector.calls), Counter(sb.st_injector.calls)
            for i in todo:
                fn(ctx, i, "main")
            out.append(
                Measure(
                    record_type,
                    len(todo),
                    Counter(sb.spectrum_injector.calls) - sp0,
                    Counter(sb.st_injector.calls) - st0,
                    units(todo),
                )
            )

        run("customer", sync_customer, customers)
        run("site", sync_site, locations)
        run("job", sync_job, jobs)
        run("invoice", sync_invoice, invoices)
        entries = {tc["id"]: len(tc["entries"]) for tc in cards}
        run(
            "timecard entry", sync_timecard, entries, units=lambda ids: sum(entries[i] for i in ids)
        )
        posted = [
            i
            for i in invoices
            if (sb.st_state.get("invoice", i) or {}).get("status") == "processed"
        ]
        voids = posted[: max(2, len(posted) // 4)]
        for i in voids:
            sb.st_state.update("invoice", i, {"status": "void"})
        run("void", sync_invoice, voids)
        ctx.close()
        sb.spectrum_db.dispose()
        return out
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__.split("\n")[0])
    p.add_argument("--companies", type=int, default=12)
    args = p.parse_args(argv)
    for m in measure_calls(args.companies):
        print(m.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
