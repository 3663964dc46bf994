"""Chaos soak (R1): a seeded world played through the real pipeline under faults, then audited.

What runs (``bench.stack``): a private ``redis-server`` (restartable without touching anybody's
Redis), both simulators on loopback, the real ingest under uvicorn, a SQLite or PostgreSQL ledger
and ``--workers`` real Celery worker processes. The seeded ServiceTrade world (companies,
locations, jobs, approved invoices, a void, approved timecards) is *created* in the simulator with
``sandbox.replay.replay``, so every record reaches stsync as a webhook, with these faults:

- every webhook delivery sent 1..3 times, deliveries and their events shuffled;
- ServiceTrade answers 5 % of API calls with 503; Spectrum 10 % with a server error / SOAP fault
  and 5 % of writes are *ghosts* (committed, then answered as an error); dice seeded;
- one worker SIGKILLed (whole process group) part way through and started again;
- optionally (``--restart-redis``) Redis shut down without saving and started again part way
  through: everything queued, unacked or waiting for a retry is lost.
- the ingest (then run as processes, ``bench/ingest_proc.py``) SIGKILLed holding a delivery it
  stored and queued but did not answer; ServiceTrade's retry reaches a replacement
  (``kill_ingest_at``);
- with the changes phase, the worker holding a rebill SIGKILLed after Spectrum committed the
  rebill's import and before the worker heard of it (``kill_rebill``, ``RebillKiller``).

Then some posted invoices are voided (webhooks again), retries finish, and the missed-change sweep
(``tasks.sweep.run_sweep``) plus the timecard catch-up (``tasks.timecard.run_catch_up``) and the PO
poll (``tasks.purchase_order.run_po_poll``) run in rounds until a round changes nothing. The verdict
compares with a **reference run**: the same seed synced sequentially in-process by the plain
``sync_*`` functions with no faults. It must match record for record (status and kind of failure:
records that fail or are skipped by design fail the same way), Spectrum's tables must hold the same
rows (as multisets of natural keys: 0 duplicates, 0 missing), every write-back must be in
ServiceTrade (external ids, invoice statuses, comments), no ledger row may be left
``pending``/``in_flight``, and no message may be left in Redis.

    ./.venv/bin/python -m bench.chaos --records 2000 --restart-redis     # the full soak
    ./.venv/bin/python -m bench.chaos --records 200                      # the CI size
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.changes import (
    FIX_KINDS,
    NOT_YET,
    PO_CLOSED_LINES,
    ChangePlan,
    apply_change,
    fixes_left,
    owed,
    owed_problems,
    plan_changes,
)
from bench.stack import SOAK_RELIABILITY, Stack, settings_toml, start_stack
from sandbox.faults import FaultConfig
from sandbox.seed import SeedSpec, SeedWorld, build_world

Log = Callable[[str], None]

#: ledger record types that stand for one ServiceTrade record (progress is counted on these)
PRIMARY = ("customer", "site", "job", "invoice", "timecard")
#: error kinds that never belong to a record failing by design
BAD_KINDS = frozenset({"retries_exhausted", "poison", "internal", "transient"})
#: The replayed records keep the seed's ``created``/``updated`` times (up to ~400 days before the
#: run) although their webhooks fire now; in production a new record's ``updated`` is the moment
#: it was created. A 400-day sweep overlap puts every replayed record inside the sweep's window,
#: as a freshly created record would be, so that one whose message died with Redis is found.
SWEEP_SCHEDULES = {"sweep_every_s": 60, "sweep_overlap_s": 400 * 86_400}
#: the simulators answer in milliseconds on loopback: a 5 s read timeout is generous, and it is
#: also how long a timecard entry waits after an ambiguous PreTimeCard before looking for its
#: marker (it must stay below the retry patience, ``max_retries`` x ``retry_backoff_max_s``)
CONNECTION = {"timeout_s": 5}
#: the soak's limits plus short retry_later rounds (production: 5 min, 15 min, 1 h, ...): a
#: record whose retries ran out during the outage is tried again within seconds by the
#: re-enqueuer, which the settle rounds run as Beat would
RELIABILITY: dict[str, Any] = {
    **SOAK_RELIABILITY,
    "retry_later_delays_s": [5, 10, 20],
    # workers look at their configuration file this often (production: 30 s); the soak's
    # fix_service_line rewrites it
    "config_reload_every_s": 1,
}
#: configuration both runs share beyond the demo's: a PO line deleted in Spectrum (a change
#: kind) removes its job item (``bench.changes.PO_CLOSED_LINES``)
TABLES: dict[str, dict[str, Any]] = {
    "connections.main.purchase_orders": {"closed_lines": PO_CLOSED_LINES}
}


@dataclass(frozen=True)
class ChaosConfig:
    records: int = 2000
    seed: int = 7
    workers: int = 2
    concurrency: int = 4
    st_error_rate: float = 0.05
    spectrum_error_rate: float = 0.10
    spectrum_ghost_rate: float = 0.05
    webhook_duplicates_max: int = 3
    webhook_reorder: bool = True
    #: SIGKILL worker 1 when this share of the ServiceTrade records is settled (None: never)
    kill_worker_at: float | None = 0.35
    #: restart Redis (nothing persisted) when this share is settled (None: never)
    restart_redis_at: float | None = None
    #: void every n-th approved invoice once the first pass is over (0: none)
    void_every: int = 4
    timeout_s: float = 1800.0
    database_url: str | None = None
    worker_loglevel: str = "INFO"
    #: the changes phase (``bench.changes``) after the voids
    changes: bool = False
    #: Spectrum faults every call for this long while the changes arrive (0: no outage)
    outage_s: float = 0.0
    #: ledger on a private PostgreSQL server restarted (crash: immediate stop) when this share
    #: of the records is settled (None: never; ignored with ``database_url``)
    restart_db_at: float | None = None
    #: the ingest runs as processes (``bench/ingest_proc.py``); when this share is settled, one
    #: is SIGKILLed holding a delivery it stored and queued but did not answer, a replacement
    #: listening beside it (None: never; the ingest then runs in a thread)
    kill_ingest_at: float | None = None
    #: in the changes phase, SIGKILL the worker holding a rebill while Spectrum holds the answer
    #: to its import (reversal + new revision committed, neither recorded), and start it again
    kill_rebill: bool = False
    #: Celery retries per transient failure (None: the soak's 12); fewer retries make a shorter
    #: retry budget, so an outage of the same ratio to it (``default_outage_s``) is shorter too
    max_retries: int | None = None

    def reliability(self) -> dict[str, Any]:
        """The soak's reliability settings with this run's ``max_retries``."""
        if self.max_retries is None:
            return RELIABILITY
        return {**RELIABILITY, "max_retries": self.max_retries}


@dataclass
class ChaosReport:
    config: dict[str, Any]
    world: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    ledger: dict[str, int] = field(default_factory=dict)
    spectrum_rows: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    webhooks: dict[str, int] = field(default_factory=dict)
    chaos_events: list[str] = field(default_factory=list)
    settle_rounds: int = 0
    voided: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    changes_not_exercised: list[str] = field(default_factory=list)
    #: per change kind, how many changed records ended as the change means (rebill: a new
    #: revision number in ServiceTrade and Spectrum summing to the new total; split void: 0.00)
    changes_landed: dict[str, int] = field(default_factory=dict)
    invoices_balanced: int = 0
    #: the invoice whose rebill's worker was SIGKILLed (``kill_rebill``)
    rebill_killed: int | None = None
    outage: dict[str, float] = field(default_factory=dict)
    expected_failures: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out

    def text(self) -> str:
        lines = [
            f"chaos soak: {'OK' if self.ok else 'PROBLEMS'}  config {json.dumps(self.config)}",
            f"world: {self.world}",
            f"timings (s): {self.timings_s}",
            f"chaos: {'; '.join(self.chaos_events) or '-'}",
            f"faults fired: {self.faults}",
            f"webhooks: {self.webhooks}",
            f"voided after the first pass: {self.voided}; sweep/catch-up rounds: "
            f"{self.settle_rounds}",
            f"changes phase: {self.changes or '-'} (landed as meant: "
            f"{self.changes_landed or '-'}); outage: {self.outage or '-'}",
            f"invoices whose Spectrum AR documents sum to what ServiceTrade says is owed: "
            f"{self.invoices_balanced}",
            "ledger (type/status): "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.ledger.items())),
            "spectrum rows written: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.spectrum_rows.items())),
            "failed or skipped by design (same as the reference run): "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.expected_failures.items())) or "-"),
            f"load average (1/5/15 min) at the end: {self.load_average}",
        ]
        if self.notes:
            lines.append(f"{len(self.notes)} note(s): " + "; ".join(self.notes[:10]))
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems[:60]]
        return "\n".join(lines)


def spec_for(records: int, seed: int) -> SeedSpec:
    """The smallest world with at least ``records`` ServiceTrade records (companies + locations +
    jobs + invoices + timecards), one technician per ten companies, five days of timecards."""
    companies = max(3, records // 13)
    while True:
        spec = SeedSpec(
            seed=seed, companies=companies, techs=max(4, companies // 10), timecard_days=5
        )
        if world_counts(build_world(spec))["records"] >= records:
            return spec
        companies += max(1, companies // 20)


def world_counts(world: SeedWorld) -> dict[str, int]:
    st = world.servicetrade
    vendors = {c["id"] for c in st["company"] if c.get("isVendor")}
    out = {
        "company": sum(1 for c in st["company"] if c["id"] not in vendors),
        "location": sum(1 for loc in st["location"] if loc["company"]["id"] not in vendors),
        "job": len(st["job"]),
        "invoice": len(st["invoice"]),
        "timecard": len(st["timecard"]),
    }
    out["records"] = sum(out.values())
    out["timecard_entries"] = sum(len(tc["entries"]) for tc in st["timecard"])
    return out


def void_targets(world: SeedWorld, every: int) -> list[int]:
    """Approved invoices voided after the first pass: every n-th by id (deterministic)."""
    if every <= 0:
        return []
    ids = sorted(
        i["id"] for i in world.servicetrade["invoice"] if i["status"] == "pending_accounting"
    )
    return ids[::every]


# --- the reference run ----------------------------------------------------------------------------
@dataclass
class Snapshot:
    """What one run left behind, in comparable form."""

    outcomes: dict[tuple[str, str], tuple[str, str]]  # (type, id) -> (status, error kind)
    reasons: dict[tuple[str, str], str]
    tables: dict[str, Counter[tuple[Any, ...]]]
    table_rows: dict[str, int]
    st_invoices: dict[int, tuple[str, str | None]]
    comments: Counter[tuple[int, int]]
    external_ids: dict[tuple[str, int], str]
    #: invoice id -> (ServiceTrade status, owed per ServiceTrade, sum of its Spectrum documents)
    owed: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    #: ServiceTrade job items made from Spectrum PO lines: (PO line ref, job, name, qty, cost)
    po_items: Counter[tuple[Any, ...]] = field(default_factory=Counter)


#: Spectrum tables stsync writes (attribute of ``infolink_schema``), and the natural identity of a
#: row in each (codes that depend on the order records were synced in are left out: customer codes
#: and site ids)
IDENTITY: dict[str, tuple[str, ...]] = {
    "customers": ("Name", "Address_1", "City", "Phone"),
    "sites": ("Site_Name", "Site_Address1", "Site_City"),
    "jobs": (
        "Job_Number",
        "Job_Description",
        "Job_Type",
        "Cost_Center",
        "Price_Method_Code",
        "Status_Code",
        "Complete_Date",
    ),
    "phases": ("Job_Number", "Phase_Code", "Cost_Type"),
    "ar_invoices": (
        "Invoice_Or_Transaction",
        "Transaction_Type",
        "Invoice_Amount",
        "Sales_Tax_Amount",
        "Job_Number",
    ),
    "ar_invoice_lines": ("Invoice_Or_Transaction", "Line_Number", "Line_Extension"),
    "pre_time": ("Message", "Employee_Code", "Hours_Employee", "Pay_Type", "Job_Number"),
    "work_orders": ("WO_Number",),
}


def _table_names() -> dict[str, tuple[str, ...]]:
    """Info-Link table name -> identity columns (checked against the schema, so a renamed column
    cannot silently drop out of the audit)."""
    from clients.spectrum import infolink_schema as t

    out: dict[str, tuple[str, ...]] = {}
    for attr, cols in IDENTITY.items():
        table = getattr(t, attr)
        unknown = [c for c in cols if c not in table.c]
        if unknown:
            raise RuntimeError(f"bench.chaos IDENTITY: {table.name} has no column(s) {unknown}")
        out[table.name] = cols
    return out


def _norm(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def snapshot(ledger: Any, spectrum_db: Any, st_state: Any, baseline: dict[str, int]) -> Snapshot:
    """Read a finished run: ledger outcomes, Spectrum rows, ServiceTrade write-backs."""
    outcomes: dict[tuple[str, str], tuple[str, str]] = {}
    reasons: dict[tuple[str, str], str] = {}
    for rec in ledger.list_records(limit=10_000_000):
        k = (rec.key.record_type, rec.key.source_id)
        outcomes[k] = (rec.status.value, rec.error_kind or "")
        reasons[k] = rec.last_error or ""
    tables: dict[str, Counter[tuple[Any, ...]]] = {}
    table_rows: dict[str, int] = {}
    for name, cols in _table_names().items():
        rows = spectrum_db.rows(name)
        tables[name] = Counter(tuple(_norm(r.get(c)) for c in cols) for r in rows)
        table_rows[name] = len(rows) - baseline.get(name, 0)
    st_invoices = {
        int(inv["id"]): (str(inv.get("status")), inv.get("invoiceNumber"))
        for inv in st_state.all("invoice")
    }
    comments: Counter[tuple[int, int]] = Counter(
        (int(c.get("entityType") or 0), int(c.get("entityId") or 0))
        for c in st_state.all("comment")
    )
    external_ids: dict[tuple[str, int], str] = {}
    for resource in ("company", "location", "job"):
        for obj in st_state.all(resource):
            value = (obj.get("externalIds") or {}).get("spectrum")
            if value:
                external_ids[(resource, int(obj["id"]))] = str(value)
    return Snapshot(
        outcomes,
        reasons,
        tables,
        table_rows,
        st_invoices,
        comments,
        external_ids,
        owed(ledger, spectrum_db, st_state),
        po_items(st_state),
    )


def po_items(st_state: Any) -> Counter[tuple[Any, ...]]:
    """Job items per PO line: every ServiceTrade job item whose source is a Spectrum PO line."""
    from mappers.purchase_order import SOURCE_TYPE

    out: Counter[tuple[Any, ...]] = Counter()
    for item in st_state.all("jobitem"):
        source = item.get("source") or {}
        if source.get("type") != SOURCE_TYPE:
            continue
        job = item.get("job") or {}
        out[
            (
                str(source.get("value")),
                int(job.get("id") or item.get("jobId") or 0),
                str(item.get("name")),
                float(item.get("quantity") or 0),
                float(item.get("cost") or 0),
            )
        ] += 1
    return out


def _sync_all(
    ctx: Any,
    world: SeedWorld,
    voids: list[int],
    st_state: Any,
    plan: ChangePlan,
    queued: list[tuple[str, tuple[Any, ...]]],
    *,
    spectrum_db: Any = None,
    config: Path | None = None,
    reconfigure: Callable[[], Any] | None = None,
) -> Any:
    """Sync everything, then apply the plan's changes in order; returns the context in use at
    the end (a configuration fix rebuilds it from the rewritten file, ``reconfigure``)."""
    from tasks.customer import sync_customer
    from tasks.heal import user_changed
    from tasks.invoice import sync_invoice
    from tasks.job import sync_job
    from tasks.purchase_order import run_po_poll
    from tasks.requeue import requeue_config_changed
    from tasks.site import sync_site
    from tasks.timecard import sync_timecard

    st = world.servicetrade
    vendors = {c["id"] for c in st["company"] if c.get("isVendor")}
    first: list[tuple[Callable[..., Any], Iterable[int]]] = [
        (sync_customer, [c["id"] for c in st["company"] if c["id"] not in vendors]),
        (sync_site, [x["id"] for x in st["location"] if x["company"]["id"] not in vendors]),
        (sync_job, [j["id"] for j in st["job"]]),
        (sync_invoice, [i["id"] for i in st["invoice"]]),
        (sync_timecard, [tc["id"] for tc in st["timecard"]]),
    ]
    for fn, ids in first:
        for i in ids:
            fn(ctx, i, "main")
    for i in voids:
        st_state.update("invoice", i, {"status": "void"})
        sync_invoice(ctx, i, "main")
    run_po_poll(ctx)  # Beat's PO poll: lines on the synced jobs become job items
    sync: dict[str, Callable[..., Any]] = {
        "sync.customer": sync_customer,
        "sync.site": sync_site,
        "sync.job": sync_job,
        "sync.invoice": sync_invoice,
        "sync.timecard": sync_timecard,
    }
    for change in plan.changes:  # the same changes, in the same order
        apply_change(st_state, change, spectrum_db=spectrum_db, config=config)
        queued.clear()  # what the first pass queued is what the soak's sweep rounds settle
        if change.resource == "user":  # its `user` webhook: sync.user
            user_changed(ctx, change.invoice_id, "main")
        elif change.resource == "config":  # the workers reload; the re-enqueuer queues
            if reconfigure is None:
                raise ValueError("a configuration change needs reconfigure")
            ctx = reconfigure()
            requeue_config_changed(ctx, queued.append)
        elif change.resource == "po_line":  # made in Spectrum: the PO poll below finds it
            pass
        else:
            sync_one = sync_job if change.resource == "job" else sync_invoice
            sync_one(ctx, change.invoice_id, "main")
        # what the change queues (a healed job re-queues the invoices and timecards that waited
        # for it) runs here, in order, as the workers run it in the soak
        while queued:
            name, args = queued.pop(0)
            if name in sync:
                sync[name](ctx, *args)
    run_po_poll(ctx)  # deleted PO lines follow ``closed_lines``
    return ctx


def reference_run(
    world: SeedWorld, spec: SeedSpec, voids: list[int], tmp: Path, plan: ChangePlan | None = None
) -> Snapshot:
    """The same seed synced sequentially in-process (plain sync functions), no faults."""
    from fastapi.testclient import TestClient

    from sandbox.credentials import demo_environment
    from sandbox.run import in_process_sandbox
    from worker.context import build_context
    from worker.ledger import Ledger
    from worker.settings import load_settings

    tmp.mkdir(parents=True, exist_ok=True)
    sb = in_process_sandbox(spec, db_url=f"sqlite:///{tmp / 'spectrum.sqlite'}")
    baseline = {name: len(sb.spectrum_db.rows(name)) for name in _table_names()}
    config = settings_toml(
        tmp,
        reliability=RELIABILITY,
        schedules=SWEEP_SCHEDULES,
        connection=CONNECTION,
        tables=TABLES,
    )
    env = demo_environment("http://st.sandbox", "http://spectrum.sandbox", sb.spectrum_db.url)
    env.update(
        {"DATABASE_URL": f"sqlite:///{tmp / 'ledger.sqlite'}", "STSYNC_DATA_DIR": str(tmp / "data")}
    )
    ledger = Ledger(load_settings(config, env).database_url)
    ledger.migrate()

    def transport(app: Any) -> Any:
        return TestClient(app, raise_server_exceptions=False)._transport  # noqa: SLF001

    queued: list[tuple[str, tuple[Any, ...]]] = []
    contexts: list[Any] = []

    def context() -> Any:
        """A context on the configuration file as it is now (re-read after a fix of it)."""
        contexts.append(
            build_context(
                load_settings(config, env),
                enqueue=lambda name, args: queued.append((name, tuple(args))),
                st_transport=transport(sb.st_app),
                spectrum_transport=transport(sb.spectrum_app),
                retry_wait_s=0,
                ledger=ledger,
            )
        )
        return contexts[-1]

    quiet = logging.getLogger("stsync")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # expected failures would print one warning each
    try:
        _sync_all(
            context(),
            world,
            voids,
            sb.st_state,
            plan or ChangePlan(),
            queued,
            spectrum_db=sb.spectrum_db,
            config=config,
            reconfigure=context,
        )
        return snapshot(ledger, sb.spectrum_db, sb.st_state, baseline)
    finally:
        quiet.setLevel(level)
        for ctx in contexts:
            ctx.close()
        sb.spectrum_db.dispose()


# --- comparing ------------------------------------------------------------------------------------
def compare(
    expected: Snapshot, actual: Snapshot, stack_checks: list[str], notes: list[str] | None = None
) -> list[str]:
    """Every difference between the reference run and the chaos run, as readable problems.

    One difference is a note, not a problem: a record the reference run *skipped* (nothing to
    write) that has no ledger row at all, because its message died with Redis and the sweep does
    not list it (``GET /job?status=all`` leaves canceled jobs out, reference §5.3).
    """
    problems = list(stack_checks)
    problems += owed_problems("reference run", expected.owed)
    problems += owed_problems("chaos run", actual.owed)
    for k in sorted(set(expected.outcomes) | set(actual.outcomes)):
        want, got = expected.outcomes.get(k), actual.outcomes.get(k)
        if got is not None and (got[1] in BAD_KINDS or got[0] in ("pending", "in_flight")):
            why = actual.reasons.get(k, "")[:200]
            problems.append(f"{k[0]} {k[1]}: {got[0]} ({got[1]}): {why}")
        elif got is None and want is not None and want[0] == "skipped" and notes is not None:
            notes.append(f"{k[0]} {k[1]}: skipped in the reference run, never examined here")
        elif want != got:
            problems.append(
                f"{k[0]} {k[1]}: expected {want} as in the reference run, got {got}"
                f" {actual.reasons.get(k, '')[:200]!r}"
            )
    for name, want_rows in expected.tables.items():
        got_rows = actual.tables.get(name, Counter())
        missing, extra = want_rows - got_rows, got_rows - want_rows
        for row, n in list(missing.items())[:10]:
            problems.append(f"Spectrum {name}: missing {n}x {row}")
        for row, n in list(extra.items())[:10]:
            problems.append(f"Spectrum {name}: {n} extra (duplicate or wrong) {row}")
        dupes = [row for row, n in got_rows.items() if n > 1 and want_rows.get(row, 0) < n]
        if dupes:
            problems.append(f"Spectrum {name}: {len(dupes)} natural key(s) present more than once")
    missing_items = expected.po_items - actual.po_items
    extra_items = actual.po_items - expected.po_items
    for item, n in list(missing_items.items())[:10]:
        problems.append(f"ServiceTrade job items per PO line: missing {n}x {item}")
    for item, n in list(extra_items.items())[:10]:
        problems.append(
            f"ServiceTrade job items per PO line: {n} extra (duplicate or wrong) {item}"
        )
    for inv_id, want_inv in expected.st_invoices.items():
        got_inv = actual.st_invoices.get(inv_id)
        if got_inv != want_inv:
            problems.append(
                f"ServiceTrade invoice {inv_id}: status/number {got_inv}, expected {want_inv}"
            )
    if expected.comments != actual.comments:
        diff = (expected.comments - actual.comments) + (actual.comments - expected.comments)
        problems.append(
            f"ServiceTrade comments differ from the reference on {len(diff)} "
            f"record(s), e.g. {list(diff.items())[:5]} (expected "
            f"{sum(expected.comments.values())}, got {sum(actual.comments.values())})"
        )
    ledger_type = {"company": "customer", "location": "site", "job": "job"}
    for (resource, st_id), _ in expected.external_ids.items():
        if (resource, st_id) not in actual.external_ids:
            problems.append(f"ServiceTrade {resource} {st_id}: external id not written back")
    for (resource, st_id), value in actual.external_ids.items():
        want_id = expected.external_ids.get((resource, st_id))
        rec_type = ledger_type[resource]
        if want_id is None:
            problems.append(f"ServiceTrade {resource} {st_id}: unexpected external id {value}")
        elif resource == "job" and value != want_id:
            problems.append(f"ServiceTrade job {st_id}: external id {value}, expected {want_id}")
        elif (rec_type, str(st_id)) not in actual.outcomes:
            problems.append(f"ServiceTrade {resource} {st_id}: external id without ledger row")
    return problems


# --- the soak -------------------------------------------------------------------------------------
def landed(plan: ChangePlan, snap: Snapshot) -> dict[str, int]:
    """How many changes ended as they mean in this run (see ``ChaosReport.changes_landed``)."""
    out = dict.fromkeys(("rebill", "split_void", "po_line_deleted"), 0)  # jobs: by the tables
    refs = {item[0] for item in snap.po_items}
    left = fixes_left(snap.reasons)
    for kind in sorted({c.kind for c in plan.changes if c.kind in FIX_KINDS}):
        out[kind] = int(left[kind] == 0)  # no record still fails for the fixed cause
    for c in plan.changes:
        if c.kind == "po_line_deleted":  # its job item went with it (``closed_lines``)
            out[c.kind] += f"PO {c.invoice_id}-{c.line:03d}" not in refs
            continue
        balance = snap.owed.get(c.invoice_id)
        if balance is None or balance[1] != balance[2]:
            continue
        number = snap.st_invoices.get(c.invoice_id, ("", None))[1] or ""
        if (c.kind == "rebill" and balance[0] == "processed" and number.endswith("-1")) or (
            c.kind == "split_void" and balance[0] == "void" and balance[2] == "0.00"
        ):
            out[c.kind] += 1
    return out


def _settled(stack: Stack, expected: int) -> float:
    from worker.ledger import TERMINAL

    counts = stack.ledger.counts()
    done = sum(
        n for (rt, st), n in counts.items() if rt in PRIMARY and st in {s.value for s in TERMINAL}
    )
    return done / expected if expected else 1.0


def _wait_quiet(stack: Stack, deadline: float, log: Log, *, need_ledger: bool) -> bool:
    """Until nothing is queued or unacked (and, with ``need_ledger``, no row open), twice in a
    row a second apart. False when the deadline passes first."""
    calm = 0
    last_note = 0.0
    while time.monotonic() < deadline:
        quiet = stack.broker_quiet() and (not need_ledger or stack.open_rows() == 0)
        calm = calm + 1 if quiet else 0
        if calm >= 2:
            return True
        if time.monotonic() - last_note > 15:
            last_note = time.monotonic()
            try:
                backlog = stack.redis.backlog()
            except Exception as exc:  # noqa: BLE001 - a note only
                backlog = {"error": str(exc)}  # type: ignore[dict-item]
            log(f"  waiting: broker {backlog}, open ledger rows {stack.open_rows()}")
        time.sleep(1.0)
    return False


def _stale_span(stack: Stack) -> float:
    rel = stack.settings.reliability
    return float(rel.retry_backoff_max_s + rel.task_time_limit_s)


def settle(stack: Stack, ctx: Any, world: SeedWorld, deadline: float, log: Log) -> int:
    """Sweep + catch-up rounds until a round changes nothing; returns the number of rounds.

    A round waits for the broker to drain; rows left open then (their messages were lost) are
    re-queued by the sweep once they are stale, as in production.
    """
    from tasks.requeue import run_requeue
    from tasks.sweep import run_sweep
    from tasks.timecard import run_catch_up

    approvals = [int(tc["approvedOn"]) for tc in world.servicetrade["timecard"]]
    since = datetime.fromtimestamp(min(approvals, default=0) - 86_400, UTC)
    until = datetime.fromtimestamp(max(approvals, default=0) + 86_400, UTC)
    previous: dict[tuple[str, str], str] | None = None
    rounds = 0
    while time.monotonic() < deadline:
        _wait_quiet(stack, deadline, log, need_ledger=False)
        now = {
            (r.key.record_type, r.key.source_id): r.status.value
            for r in stack.ledger.list_records(limit=10_000_000)
        }
        open_rows = stack.open_rows()
        if open_rows == 0 and now == previous:
            break
        if open_rows:
            oldest = min(
                r.updated_at
                for r in stack.ledger.list_records(statuses=_open_statuses(), limit=10_000_000)
            )
            wait = _stale_span(stack) + 2 - (datetime.now(UTC) - oldest).total_seconds()
            if wait > 0:
                log(
                    f"  {open_rows} open ledger row(s) whose messages are gone: the sweep "
                    f"re-queues them once stale, in {wait:.0f}s"
                )
                time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
        requeued = run_requeue(ctx)  # what Beat's schedule.requeue does every minute
        swept = run_sweep(ctx)
        caught = run_catch_up(ctx, since, until, inline=False)
        po, po_moved = _po_poll(ctx)
        rounds += 1
        log(
            f"  round {rounds}: re-enqueuer {requeued.as_dict()}; sweep queued "
            f"{sum(s.total_enqueued for s in swept)} "
            f"(errors {sum(len(s.errors) for s in swept)}), catch-up queued {caught.enqueued} "
            f"card(s); PO poll: {po}; open rows before: {open_rows}"
        )
        # a PO poll that wrote (or stopped on a fault) is run again: the next round must find
        # nothing to do
        previous = None if po_moved else now
    return rounds


#: how often the in-process PO poll is tried again when it stops on a fault, and the pause
#: between tries: Celery retries ``schedule.po_poll`` within seconds (the soak's backoff is 1-4 s)
PO_POLL_TRIES = 6
PO_POLL_BACKOFF_S = 1.0


def _po_poll(ctx: Any) -> tuple[str, bool]:
    """What Beat's ``schedule.po_poll`` does: one PO poll in-process, tried again after a fault
    as Celery would. Returns a summary and whether it changed anything (or still failed, so it
    must run again next round)."""
    from tasks.purchase_order import run_po_poll

    stops: list[str] = []
    for attempt in range(PO_POLL_TRIES):
        if attempt:
            time.sleep(PO_POLL_BACKOFF_S)  # the retry's countdown, not a wait for a condition
        try:
            summary = run_po_poll(ctx)
        except Exception as exc:  # noqa: BLE001 - Celery would retry it, and so does this loop
            stops.append(type(exc).__name__)
            continue
        moved = summary.created + summary.updated + summary.removed + summary.gone
        retried = f" after stopping on {', '.join(stops)}" if stops else ""
        return (
            f"{summary.created} created, {summary.updated} updated, {summary.removed} removed, "
            f"{summary.gone} gone, {summary.waiting_for_job} waiting, {summary.failed} failed"
            f"{retried}",
            bool(moved or summary.busy or stops),
        )
    return f"stopped on {', '.join(stops)} (again next round)", True


def _open_statuses() -> tuple[Any, ...]:
    from worker.ledger import Status

    return (Status.PENDING, Status.IN_FLIGHT, Status.RETRY_LATER)


def _stack_checks(stack: Stack) -> list[str]:
    problems = []
    hooks = stack.webhooks().counters()
    if hooks["pending_events"] or hooks["pending_deliveries"]:
        problems.append(f"webhooks still queued in the simulator: {hooks}")
    backlog = stack.redis.backlog()
    if backlog["ready"] or backlog["unacked"]:
        problems.append(f"messages left in Redis (stuck tasks): {backlog}")
    if stack.open_rows():
        problems.append(f"{stack.open_rows()} ledger row(s) still pending or in_flight")
    dead = [name for name, p in stack.workers.items() if p.poll() is not None]
    if dead:
        problems.append(f"worker(s) not running at the end: {dead}")
    return problems


def run_chaos(cfg: ChaosConfig, *, workdir: Path | None = None, log: Log = print) -> ChaosReport:
    """Run the soak described in the module docstring and return its report."""
    report = ChaosReport(config=asdict(cfg))
    spec = spec_for(cfg.records, cfg.seed)
    owned = workdir is None
    tmpdir = tempfile.TemporaryDirectory(prefix="stsync-chaos-") if owned else None
    root = Path(tmpdir.name) if tmpdir is not None else Path(workdir)  # type: ignore[arg-type]
    started = time.monotonic()
    deadline = started + cfg.timeout_s
    pg = None
    database_url = cfg.database_url
    if cfg.restart_db_at is not None and database_url is None:
        from bench.pg import PrivatePostgres

        pg = PrivatePostgres()
        pg.start()
        database_url = pg.url
    try:
        stack = start_stack(
            root / "soak",
            database_url=database_url,
            schedules=SWEEP_SCHEDULES,
            connection=CONNECTION,
            reliability=cfg.reliability(),
            ingest="process" if cfg.kill_ingest_at is not None else True,
            tables=TABLES,
        )
        try:
            world = build_world(SeedSpec(**{**asdict(spec), "st_base_url": stack.sandbox.st_url}))
            report.world = world_counts(world)
            voids = void_targets(world, cfg.void_every)
            plan = (
                plan_changes(world, cfg.seed, exclude=set(voids)) if cfg.changes else ChangePlan()
            )
            report.changes = plan.counts() if cfg.changes else {}
            report.changes_not_exercised = list(NOT_YET) if cfg.changes else []
            log(
                f"world: {report.world}; {len(voids)} invoice(s) to void later; changes "
                f"{report.changes or '-'}"
            )
            baseline = _soak(stack, cfg, world, voids, deadline, report, log, plan, pg)
            report.timings_s["soak"] = round(time.monotonic() - started, 1)
            actual = snapshot(
                stack.ledger, stack.sandbox.spectrum_db, stack.sandbox.st_state, baseline
            )
            checks = _stack_checks(stack)
        finally:
            stack.close()
        t_ref = time.monotonic()
        log("reference run (sequential, no faults) ...")
        expected = reference_run(world, spec, voids, root / "reference", plan)
        report.timings_s["reference_run"] = round(time.monotonic() - t_ref, 1)
        report.spectrum_rows = actual.table_rows
        report.invoices_balanced = sum(1 for _, want, got in actual.owed.values() if want == got)
        report.changes_landed = landed(plan, actual)
        report.problems += compare(expected, actual, checks, report.notes)
        report.problems += rebill_kill_problems(report.rebill_killed, actual)
        report.expected_failures = dict(
            Counter(
                f"{k[0]} {st}" + (f" ({kind})" if kind else "")
                for k, (st, kind) in expected.outcomes.items()
                if st in ("failed", "skipped", "unknown")
            )
        )
        report.ledger = dict(Counter(f"{rt}/{st}" for (rt, _), (st, _) in actual.outcomes.items()))
        report.timings_s["total"] = round(time.monotonic() - started, 1)
        report.load_average = [round(x, 2) for x in os.getloadavg()]
        return report
    finally:
        if pg is not None:
            pg.close()
        if tmpdir is not None:
            tmpdir.cleanup()


def _soak(
    stack: Stack,
    cfg: ChaosConfig,
    world: SeedWorld,
    voids: list[int],
    deadline: float,
    report: ChaosReport,
    log: Log,
    plan: ChangePlan | None = None,
    pg: Any = None,
) -> dict[str, int]:
    """Drive the soak; returns the Spectrum row counts of the seed (before any sync)."""
    from sandbox.replay import replay
    from worker.settings import load_settings

    sb = stack.sandbox
    sb.spectrum_db.load(world.spectrum, baseline=True)
    baseline = {name: len(sb.spectrum_db.rows(name)) for name in _table_names()}
    stack.register_webhook()
    sb.st_injector.configure(
        FaultConfig(
            error_rate=cfg.st_error_rate,
            webhook_duplicates_max=cfg.webhook_duplicates_max,
            webhook_reorder=cfg.webhook_reorder,
            seed=cfg.seed,
        )
    )
    sb.spectrum_injector.configure(
        FaultConfig(
            error_rate=cfg.spectrum_error_rate,
            ghost_write_rate=cfg.spectrum_ghost_rate,
            seed=cfg.seed + 1,
        )
    )
    names = [f"w{i + 1}" for i in range(cfg.workers)]
    for name in names:
        stack.start_worker(name, cfg.concurrency, cfg.worker_loglevel)
    t0 = time.monotonic()
    created = replay(sb.st_state, world.servicetrade)
    log(f"replayed into ServiceTrade: {created} in {time.monotonic() - t0:.1f}s")
    expected = report.world["records"]
    killed = redis_restarted = False
    db_restarted = pg is None
    ingest_killed = cfg.kill_ingest_at is None
    last_note = 0.0
    calm = 0
    while time.monotonic() < deadline:
        share = _settled(stack, expected)
        if cfg.kill_worker_at is not None and not killed and share >= cfg.kill_worker_at:
            stack.kill_worker(names[0])
            killed = True
            event = f"SIGKILL worker {names[0]} at {share:.0%} settled"
            log(event)
            report.chaos_events.append(event)
            time.sleep(1.0)
            stack.start_worker(names[0], cfg.concurrency, cfg.worker_loglevel)
            report.chaos_events.append(f"worker {names[0]} restarted")
        if (
            cfg.restart_redis_at is not None
            and not redis_restarted
            and share >= cfg.restart_redis_at
        ):
            backlog = stack.redis.backlog()
            stack.redis.restart()
            redis_restarted = True
            event = f"Redis restarted (nothing saved) at {share:.0%} settled, losing {backlog}"
            log(event)
            report.chaos_events.append(event)
        if not db_restarted and cfg.restart_db_at is not None and share >= cfg.restart_db_at:
            pg.restart()
            db_restarted = True
            event = f"PostgreSQL ledger restarted (immediate stop: a crash) at {share:.0%} settled"
            log(event)
            report.chaos_events.append(event)
        if not ingest_killed and share >= (cfg.kill_ingest_at or 0.0):
            ingest_killed = True
            event = kill_ingest_mid_delivery(stack, report)
            log(event)
            report.chaos_events.append(event)
        if time.monotonic() - last_note > 10:
            last_note = time.monotonic()
            log(
                f"  {time.monotonic() - t0:6.0f}s settled {share:.0%}, open rows "
                f"{stack.open_rows()}, broker {stack.redis.backlog()}"
            )
        everything_happened = (
            (killed or cfg.kill_worker_at is None)
            and (redis_restarted or cfg.restart_redis_at is None)
            and db_restarted
            and ingest_killed
        )
        calm = calm + 1 if everything_happened and stack.broker_quiet() else 0
        # over when nothing moves any more: rows left open then lost their messages, and the
        # settle rounds (the sweep) are what brings them back
        if calm >= 4 and (stack.open_rows() == 0 or calm >= 10):
            break
        time.sleep(0.5)
    report.timings_s["first_pass"] = round(time.monotonic() - t0, 1)
    ctx = stack.context()
    try:
        report.settle_rounds += settle(stack, ctx, world, deadline, log)
        report.timings_s["first_pass_settled"] = round(time.monotonic() - t0, 1)
        for inv_id in voids:
            sb.st_state.update("invoice", inv_id, {"status": "void"})
        report.voided = len(voids)
        log(f"voided {len(voids)} invoice(s); settling again")
        report.settle_rounds += settle(stack, ctx, world, deadline, log)
        report.timings_s["voids_settled"] = round(time.monotonic() - t0, 1)
        if plan is not None and plan.changes:
            killer = RebillKiller(stack, plan, cfg, log) if cfg.kill_rebill else None
            if killer is not None:
                killer.start()  # holds the AR imports that reach Spectrum (after any outage)
            _changes_phase(stack, cfg, plan, report, log)
            if any(c.resource == "config" for c in plan.changes):
                # Beat's re-enqueuer runs in a worker, which has reloaded the rewritten file
                ctx.close()
                stack.settings = load_settings(stack.settings.config_path, stack.env)
                ctx = stack.context()
            report.settle_rounds += settle(stack, ctx, world, deadline, log)
            if killer is not None:
                killer.finish(report)
                if killer.killed_at is not None:  # its redelivery is settled too
                    report.settle_rounds += settle(stack, ctx, world, deadline, log)
            report.timings_s["changes_settled"] = round(time.monotonic() - t0, 1)
        report.timings_s["settled"] = round(time.monotonic() - t0, 1)
    finally:
        ctx.close()
    report.faults = {
        k: v
        for k, v in {
            **{f"servicetrade {k}": v for k, v in sb.st_injector.outcomes.items()},
            **{f"spectrum {k}": v for k, v in sb.spectrum_injector.outcomes.items()},
        }.items()
        if not k.endswith(":ok")
    }
    report.faults["spectrum calls"] = sum(sb.spectrum_injector.calls.values())
    report.faults["servicetrade calls"] = sum(sb.st_injector.calls.values())
    report.faults["worker kills"] = stack.kills
    report.faults["redis restarts"] = stack.redis.restarts
    report.faults["postgresql restarts"] = pg.restarts if pg is not None else 0
    report.faults["ingest kills"] = stack.ingest_kills
    report.faults["rebill worker kills"] = int(report.rebill_killed is not None)
    report.webhooks = stack.webhooks().counters()
    return baseline


def retry_budget_s(rel: Any) -> float:
    """How long Celery keeps retrying one transient failure: the sum of the backoff countdowns
    (before jitter, which only shortens them) over ``max_retries`` retries."""
    return float(
        sum(
            min(rel.retry_backoff_s * 2**n, rel.retry_backoff_max_s) for n in range(rel.max_retries)
        )
    )


#: production's budget with the defaults (8 retries, 2 s doubling, 600 s cap) is ~8.5 minutes;
#: the issue's outage is >= 30 minutes, so an outage is at least this many budgets long
OUTAGE_RATIO = 3.5


# --- crashes mid-delivery and mid-rebill (issue 15) -------------------------------------------
#: the Spectrum service of the AR import (a rebill's reversal and new revision go in one call)
AR_IMPORT = "ARMultiLineInvoice"


def kill_ingest_mid_delivery(stack: Stack, report: ChaosReport, wait_s: float = 60.0) -> str:
    """SIGKILL an ingest process holding a delivery it stored (inbox row) and queued, whose 202
    it never sent; a replacement listens on the same port. ServiceTrade's emitter sends one
    delivery at a time, so exactly one is in flight. Its retry must be answered (a duplicate the
    dedupe keys absorb); the verdict then shows it landed once."""
    from worker.serve import wait_for

    stack.start_ingest_process()  # the replacement, up before the kill
    stack.hold_file.write_text("after")
    try:
        pid, mode, message_id = wait_for(stack.held_delivery, wait_s, 0.02, "a held delivery")
    except AssertionError:
        stack.hold_file.with_suffix(".claim").write_text("nobody\n")  # hold nothing later
        report.problems.append(f"ingest kill: no delivery arrived in {wait_s:.0f}s to hold")
        return "ingest kill: not exercised (no delivery in flight)"
    stack.kill_ingest(pid)

    try:
        retry = wait_for(
            lambda: retry_of_killed_try(stack.webhooks().history, message_id),
            30,
            0.05,
            "the retry of the held delivery",
        )
    except AssertionError:
        report.problems.append(f"ingest kill: delivery {message_id} was not retried after it")
        return f"SIGKILL ingest pid {pid} holding delivery {message_id}: no retry answered"
    if retry["status"] is None or not 200 <= int(retry["status"]) < 300:
        report.problems.append(f"ingest kill: the retry of {message_id} got {retry}")
    return (
        f"SIGKILL ingest pid {pid} holding 1 delivery in flight ({message_id[:8]}, {mode} not "
        f"sent: inbox row stored, tasks queued); ServiceTrade's try {retry['attempt']} of it "
        f"answered {retry['status'] or retry['error']} by the replacement"
    )


def retry_of_killed_try(history: Iterable[dict[str, Any]], message_id: str) -> Any:
    """The emitter's next try of the delivery whose try died with the ingest (the first failed
    try of ``message_id``; the soak sends a delivery 1-3 times, each copy counting its own tries,
    and one copy at a time), once it was made; else None."""
    killed: dict[str, Any] | None = None
    for h in list(history):
        if h["messageId"] != message_id:
            continue
        if killed is None and h["status"] is None:
            killed = h
        elif killed is not None and h["attempt"] == killed["attempt"] + 1:
            return h
    return None


class RebillKiller:
    """SIGKILL the worker that holds a rebill right after Spectrum committed its import (the
    reversal of the old revision and the new revision, one call Spectrum commits as a unit) and
    before the worker heard the answer or recorded either; start it again.

    From ``start`` (before the changes, so through any outage) Spectrum holds the answer of every
    AR import that reaches it (``FaultInjector.hold`` with ``timeout``: commit, then answer
    late; ahead of the dice, after the outage), up to ``MAX_HOLDS``, until a rebill's is
    caught. Imports that are not a rebill's (a split void's reversal, say) time out and are
    found landed like any other ambiguous write. Holding one import at a time let rebills
    through unheld: the outcome of a held import is counted only when its late answer goes, so
    in the burst after the outage every other import went by while the first was held; and a
    hold behind the dice let a rebill through as a ghost write."""

    MAX_HOLDS = 40

    def __init__(self, stack: Stack, plan: ChangePlan, cfg: ChaosConfig, log: Log) -> None:
        self.stack, self.cfg, self.log = stack, cfg, log
        self.ids = sorted({str(c.invoice_id) for c in plan.changes if c.kind == "rebill"})
        self.killed_at: float | None = None
        self.invoice: int | None = None
        self.event = ""
        self._inj = stack.sandbox.spectrum_injector
        self._held0 = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rebill-killer", daemon=True)

    def start(self) -> None:
        self._held0 = self._inj.outcomes.get(f"{AR_IMPORT}:timeout", 0)
        self._inj.hold(AR_IMPORT, "timeout", self.MAX_HOLDS)
        self._thread.start()

    @property
    def held(self) -> int:
        """AR imports held so far (counted when their late answer went)."""
        return int(self._inj.outcomes.get(f"{AR_IMPORT}:timeout", 0)) - self._held0

    def _mid_rebill(self) -> Any:
        """The ledger row of a rebill whose documents are all in Spectrum while its worker
        still holds it (in flight) with a revision >= 1 planned."""
        from clients.spectrum import infolink_schema as il
        from worker.ledger import Status

        rows = self.stack.ledger.get_many("main", "invoice", self.ids)
        busy = [
            r
            for r in rows.values()
            if r.status is Status.IN_FLIGHT
            and r.lease_owner
            and any(re.search(r"-\d+$", n) for n in (r.state.get("planned") or {}))
        ]
        if not busy:
            return None
        there = {
            str(row["Invoice_Or_Transaction"]).strip()
            for row in self.stack.sandbox.spectrum_db.rows(il.ar_invoices.name)
        }
        for rec in busy:
            if all(str(n).strip() in there for n in rec.state["planned"]):
                return rec
        return None

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            rec = self._mid_rebill()
            if rec is not None:
                pid = int(str(rec.lease_owner).rpartition(":")[2])
                try:
                    parent = psutil.Process(pid).ppid()
                except psutil.NoSuchProcess:
                    continue
                name = next((n for n, p in self.stack.workers.items() if p.pid == parent), None)
                if name is None:
                    continue
                self._inj.release(AR_IMPORT)  # the imports after this one answer as usual
                self.stack.kill_worker(name)
                self.killed_at = time.monotonic()
                self.invoice = int(rec.key.source_id)
                self.event = (
                    f"SIGKILL worker {name} holding the rebill of invoice {self.invoice} "
                    f"(Spectrum committed {sorted(rec.state['planned'])}, stsync recorded "
                    f"neither); restarted"
                )
                self.log(self.event)
                time.sleep(1.0)
                self.stack.start_worker(name, self.cfg.concurrency, self.cfg.worker_loglevel)
                return
            time.sleep(0.05)

    def finish(self, report: ChaosReport) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        self._inj.release(AR_IMPORT)
        report.rebill_killed = self.invoice
        if self.killed_at is None:
            report.problems.append(
                f"rebill kill: no rebill caught between Spectrum's commit and its answer "
                f"({self.held} import(s) held)"
            )
        else:
            report.chaos_events.append(self.event)


def rebill_kill_problems(invoice: int | None, snap: Snapshot) -> list[str]:
    """The rebill whose worker was killed: processed in ServiceTrade under revision 1 (rebilled
    exactly once), its Spectrum documents summing to what is owed, to the cent."""
    if invoice is None:
        return []
    balance = snap.owed.get(invoice)
    number = snap.st_invoices.get(invoice, ("", None))[1] or ""
    if balance is None or balance[1] != balance[2] or not number.endswith("-1"):
        return [
            f"rebill kill: invoice {invoice} ended as {balance} numbered {number!r}: not "
            "rebilled exactly once to the cent"
        ]
    return []


def _changes_phase(
    stack: Stack, cfg: ChaosConfig, plan: ChangePlan, report: ChaosReport, log: Log
) -> None:
    """Apply the planned changes in ServiceTrade (webhooks carry them, with the soak's faults).
    With an outage, Spectrum faults every call from just before the first change until
    ``outage_s`` later; half the changes arrive at its start and half in its middle."""
    inj = stack.sandbox.spectrum_injector
    normal = inj.config
    half = len(plan.changes) // 2
    t0 = time.monotonic()
    if cfg.outage_s:
        inj.set_outage(True)  # every call an error, ahead of the rebill killer's hold
        budget = retry_budget_s(stack.settings.reliability)
        report.outage = {
            "seconds": cfg.outage_s,
            "retry_budget_s": budget,
            "ratio": round(cfg.outage_s / budget, 2),
        }
        event = (
            f"Spectrum outage for {cfg.outage_s:.0f}s (every call a fault; the retry "
            f"budget is {budget:.0f}s)"
        )
        log(event)
        report.chaos_events.append(event)
    sb, config = stack.sandbox, Path(stack.settings.config_path)
    for change in plan.changes[:half]:
        apply_change(sb.st_state, change, spectrum_db=sb.spectrum_db, config=config)
    if cfg.outage_s:
        time.sleep(max(0.0, cfg.outage_s / 2 - (time.monotonic() - t0)))
    for change in plan.changes[half:]:
        apply_change(sb.st_state, change, spectrum_db=sb.spectrum_db, config=config)
    if cfg.outage_s:
        time.sleep(max(0.0, cfg.outage_s - (time.monotonic() - t0)))
        inj.configure(normal)
        report.chaos_events.append("Spectrum answers again")
    log(f"changes applied: {plan.counts()}; settling again")


def _private_schema(pg_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh schema on ``pg_url`` for the ledger, and a function that drops it."""
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"chaos_{uuid.uuid4().hex[:10]}"
    engine = create_engine(pg_url)
    with engine.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        with engine.begin() as c:
            c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()

    return f"{pg_url}?options=-csearch_path%3D{schema}", drop


def default_outage_s(max_retries: int | None = None) -> float:
    """``OUTAGE_RATIO`` x the soak's retry budget (``SOAK_RELIABILITY``, with ``max_retries``
    retries when given)."""
    from worker.settings import ReliabilitySettings

    retries = {} if max_retries is None else {"max_retries": max_retries}
    soak = ReliabilitySettings.model_validate({**SOAK_RELIABILITY, **retries})
    return round(OUTAGE_RATIO * retry_budget_s(soak))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument(
        "--restart-redis",
        action="store_true",
        help="restart the private Redis once mid-run (nothing persisted)",
    )
    p.add_argument("--no-kill", action="store_true", help="do not SIGKILL a worker")
    p.add_argument(
        "--no-kill-ingest",
        action="store_true",
        help="run the ingest in a thread and do not SIGKILL it holding a delivery",
    )
    p.add_argument(
        "--no-kill-rebill",
        action="store_true",
        help="with --changes: do not SIGKILL the worker holding a rebill mid-import",
    )
    p.add_argument(
        "--restart-db",
        action="store_true",
        help="ledger on a private PostgreSQL server (bench/pg.py), crashed and "
        "restarted once mid-run",
    )
    p.add_argument(
        "--changes",
        action="store_true",
        help="after the first pass: invoices edited and approved again (rebill), "
        "split invoices voided (bench/changes.py)",
    )
    p.add_argument(
        "--outage",
        nargs="?",
        type=float,
        const=-1.0,
        default=0.0,
        metavar="SECONDS",
        help="Spectrum faults every call while the changes arrive; default length "
        f"{OUTAGE_RATIO} x the retry budget (implies --changes)",
    )
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument(
        "--database-url", default=None, help="ledger URL (default: SQLite in the work directory)"
    )
    p.add_argument(
        "--pg",
        default=None,
        metavar="URL",
        help="ledger on this PostgreSQL database, in a private schema dropped after "
        "(e.g. postgresql+psycopg://root@127.0.0.1:5432/test)",
    )
    p.add_argument("--workdir", type=Path, default=None, help="keep logs and databases here")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    args = p.parse_args(argv)
    database_url, drop_schema = args.database_url, None
    if args.pg:
        database_url, drop_schema = _private_schema(args.pg)
    cfg = ChaosConfig(
        records=args.records,
        seed=args.seed,
        workers=args.workers,
        concurrency=args.concurrency,
        kill_worker_at=None if args.no_kill else 0.35,
        restart_redis_at=0.6 if args.restart_redis else None,
        timeout_s=args.timeout,
        database_url=database_url,
        changes=args.changes or bool(args.outage),
        restart_db_at=0.5 if args.restart_db else None,
        outage_s=args.outage if args.outage >= 0 else default_outage_s(),
        kill_ingest_at=None if args.no_kill_ingest else 0.25,
        kill_rebill=(args.changes or bool(args.outage)) and not args.no_kill_rebill,
    )
    random.seed(cfg.seed)
    try:
        report = run_chaos(cfg, workdir=args.workdir, log=lambda s: print(s, flush=True))
    finally:
        if drop_schema is not None:
            drop_schema()
    print(report.text())
    if args.json:
        args.json.write_text(json.dumps(report.as_dict(), indent=2, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
