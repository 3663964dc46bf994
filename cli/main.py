"""``stsync``: the command line for the people who run the integration.

Every command names its connection (``--connection``, default: the configured default). Commands
that need the config read ``--config`` or ``STSYNC_CONFIG``; a bad config stops with the key named.
Every common mistake (unknown connection, broker or database down, read-only role, ledger not
migrated) ends with one line and a non-zero exit (cli/errors.py), never a traceback. Only
``stsync db upgrade`` (and ``stsync demo``) change the ledger's schema.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli import errors as cli_errors
from cli.doctor import doctor as doctor_command
from cli.errors import OperatorErrors
from cli.webhook import webhook_app
from clients.errors import ConfigError, SyncError
from worker.settings import CONFIG_ENV, Settings

app = typer.Typer(
    cls=OperatorErrors,
    help="stsync: keep ServiceTrade and Trimble Spectrum in step.",
    no_args_is_help=True,
)
config_app = typer.Typer(help="Check the configuration.", no_args_is_help=True)
broker_app = typer.Typer(
    help="The embedded Redis broker (used when BROKER_URL is not set).", no_args_is_help=True
)
db_app = typer.Typer(help="The ledger database.", no_args_is_help=True)
sandbox_app = typer.Typer(
    help="The local ServiceTrade and Spectrum simulators.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(broker_app, name="broker")
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(webhook_app, name="webhook")
app.command("doctor")(doctor_command)

console = Console()
err = Console(stderr=True)


def _report_error(line: str) -> None:
    err.print(line, highlight=False)


cli_errors.report = _report_error

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-C", help="stsync.toml (default: $STSYNC_CONFIG)")
]
ConnOpt = Annotated[str | None, typer.Option("--connection", "-c", help="Spectrum connection name")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            console.print(f"stsync {version('stsync')}", highlight=False)
        except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
            console.print("stsync (not installed)", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """stsync: keep ServiceTrade and Trimble Spectrum in step."""


def _settings(config: Path | None) -> Settings:
    return cli_errors.settings_or_exit(config)


def _context(settings: Settings) -> Any:
    from cli.schema import require_current_schema
    from worker.context import build_context, set_process_context

    ctx = build_context(settings)
    cli_errors.close_on_exit(ctx.close)
    require_current_schema(ctx.ledger.engine)
    set_process_context(ctx)
    return ctx


def _configure_celery(settings: Settings, *, start_broker: bool = False) -> Any:
    from tasks._celery import apply_reliability
    from worker.celery_app import configure

    try:
        celery_app = configure(settings, start_broker=start_broker)
    except ConfigError as exc:
        err.print(f"[red]configuration error[/red]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    apply_reliability(settings.reliability)
    return celery_app


def _routed(record_type: str) -> Any:
    """The routed record type (``tasks.registry``) a CLI name stands for; exit 2 when none."""
    from tasks import registry

    entity = registry.ENTITY_BY_NAME.get(record_type)
    if entity is None:
        err.print(
            f"[red]unknown record type {record_type!r}[/red]; one of: "
            f"{', '.join(sorted(registry.ENTITY_BY_NAME))}"
        )
        raise typer.Exit(2)
    return registry.routed(entity)


@app.command()
def sync(
    record_type: Annotated[str, typer.Argument(help="customer|site|job|invoice|timecard")],
    record_id: Annotated[int, typer.Argument(help="ServiceTrade id")],
    connection: ConnOpt = None,
    now: Annotated[bool, typer.Option("--now", help="run here instead of enqueueing")] = False,
    config: ConfigOpt = None,
) -> None:
    """Enqueue (or run now) one record's sync."""
    settings = _settings(config)
    conn = settings.connection(connection).name
    routed = _routed(record_type)
    task = routed.task
    if now:
        from cli.records import require_in_servicetrade

        ctx = _context(settings)
        try:
            require_in_servicetrade(ctx, routed.entity, record_id)
            outcome = routed.sync_function()(ctx, record_id, conn)
        except SyncError as exc:
            err.print(
                f"[yellow]not finished[/yellow] ({type(exc).__name__}): {escape(str(exc))}",
                highlight=False,
            )
            raise typer.Exit(1) from None
        style = "green" if outcome.ok else "red"
        console.print(
            f"[{style}]{outcome.result}[/{style}] {escape(str(outcome.key))} "
            f"spectrum={escape(outcome.spectrum_key or '-')} {escape(outcome.message)}",
            highlight=False,
        )
        raise typer.Exit(0 if outcome.ok or outcome.result == "skipped" else 1)
    celery_app = _configure_celery(settings)
    celery_app.send_task(task, args=(record_id, conn))
    console.print(f"enqueued {task}({record_id}, {conn!r})")


@app.command("send-job")
def send_job(
    job_id: Annotated[int, typer.Argument(help="ServiceTrade job id")],
    connection: Annotated[
        str | None,
        typer.Option(
            "--connection", "-c", help="Spectrum connection (default: the only one configured)"
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """ "Send Job to Spectrum": enqueue the job's send for a connection."""
    settings = _settings(config)
    if connection is None and len(settings.connections) > 1:
        err.print(
            "[red]name the Spectrum company to send the job to[/red]: --connection one of "
            f"{escape(', '.join(sorted(settings.connections)))}",
            highlight=False,
        )
        raise typer.Exit(2)
    conn = settings.connection(connection or next(iter(settings.connections))).name
    from tasks.registry import WORK_ORDER

    celery_app = _configure_celery(settings)
    celery_app.send_task(WORK_ORDER.task, args=(job_id, conn))
    console.print(f"enqueued {WORK_ORDER.task}({job_id}, {conn!r})")


@app.command()
def status(
    connection: ConnOpt = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="also list what synced since: today, yesterday, YYYY-MM-DD, or e.g. 2h / 3d"
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Records by type and status, the scheduled runs (last and next), and what synced lately."""
    from cli import status as status_view

    settings = _settings(config)
    led = _ledger(settings)
    conn_name = settings.connection(connection).name if connection else None
    counts = led.counts(conn_name)
    table = Table("record type", "status", "count")
    for (rtype, st), n in sorted(counts.items()):
        table.add_row(rtype, st, str(n))
    console.print(table)
    console.print(status_view.schedule_table(settings, led, conn_name))
    if since is not None:
        status_view.print_synced_since(console, settings, led, conn_name, since)
    from cli.doctor import print_paused

    print_paused(console, led, conn_name)
    from cli.recovery_status import print_recovery

    code = print_recovery(console, led, settings, conn_name)
    if code:
        raise typer.Exit(code)


def _ledger_type(record_type: str) -> str:
    """The ledger record type for a CLI name (customer/company, site/location, ...) or itself."""
    from tasks import registry

    try:
        return registry.record_type(record_type).name
    except KeyError:
        names = {name for rt in registry.RECORD_TYPES for name in rt.names}
        err.print(
            f"[red]unknown record type {record_type!r}[/red]; one of: {', '.join(sorted(names))}"
        )
        raise typer.Exit(2) from None


def _ledger(settings: Settings) -> Any:
    from cli.schema import require_current_schema
    from worker.ledger import Ledger

    led = Ledger(settings.database_url)
    cli_errors.close_on_exit(led.dispose)
    require_current_schema(led.engine)
    return led


def _children(led: Any, key: Any) -> list[Any]:
    """Ledger rows that belong to ``key``: its parts, then its siblings."""
    from sqlalchemy import select

    from tasks import registry
    from worker.ledger import Record, RecordKey, sync_record

    rt = registry.BY_NAME.get(key.record_type)
    parts, siblings = (rt.parts, rt.siblings) if rt is not None else ((), ())
    out: list[Any] = []
    if parts:
        q = (
            select(sync_record)
            .where(
                sync_record.c.connection == key.connection,
                sync_record.c.record_type.in_(parts),
                sync_record.c.source_id.like(f"{key.source_id}:%"),
            )
            .order_by(sync_record.c.id)
        )
        with led.engine.connect() as c:
            out += [Record.from_row(r) for r in c.execute(q)]
    for rtype in siblings:
        rec = led.get(RecordKey(key.connection, rtype, key.source_id))
        if rec is not None:
            out.append(rec)
    return out


def _adjustments(rec: Any) -> list[str]:
    """What the mapper adjusted to fit Spectrum, from the row's recovery state."""
    from tasks.state import Adjusted

    return Adjusted.load(rec.state).adjustments


def _record_json(led: Any, rec: Any) -> dict[str, Any]:
    return {
        "record": str(rec.key),
        "connection": rec.key.connection,
        "record_type": rec.key.record_type,
        "source_id": rec.key.source_id,
        "status": rec.status.value,
        "spectrum_key": rec.spectrum_key,
        "step": rec.step,
        "attempts": rec.attempts,
        "error_kind": rec.error_kind,
        "last_error": rec.last_error,
        "adjustments": _adjustments(rec),
        "created_at": rec.created_at.isoformat(),
        "updated_at": rec.updated_at.isoformat(),
        "done_at": rec.done_at.isoformat() if rec.done_at else None,
        "events": [
            {
                "at": ev.at.isoformat(),
                "system": ev.system,
                "service": ev.service,
                "method": ev.method,
                "outcome": ev.outcome,
                "status_code": ev.status_code,
                "duration_ms": ev.duration_ms,
                "request_digest": ev.request_digest,
                "spectrum_key": ev.spectrum_key,
                "detail": ev.detail,
            }
            for ev in led.history(rec.key)
        ],
        "alerts": [
            {
                "at": a["at"].isoformat(),
                "kind": a["kind"],
                "message": a["message"],
                "sent_at": a["sent_at"].isoformat() if a["sent_at"] else None,
            }
            for a in led.alerts(rec.key)
        ],
    }


def _print_record(led: Any, rec: Any, *, indent: str = "") -> None:
    console.print(
        f"{indent}[bold]{escape(str(rec.key))}[/bold] status={rec.status.value} "
        f"spectrum={escape(rec.spectrum_key or '-')} attempts={rec.attempts} "
        f"step={escape(rec.step or '-')}",
        highlight=False,
    )
    if rec.last_error:
        console.print(
            f"{indent}  last error ({escape(str(rec.error_kind))}): {escape(rec.last_error)}",
            highlight=False,
        )
    for adj in _adjustments(rec):
        console.print(f"{indent}  adjusted: {escape(str(adj))}", highlight=False)
    for a in led.alerts(rec.key):
        sent = a["sent_at"].strftime("%Y-%m-%d %H:%M") if a["sent_at"] else "not mailed yet"
        console.print(
            f"{indent}  alert ({escape(a['kind'])}, {sent}): {escape(a['message'])}",
            highlight=False,
        )
    events = led.history(rec.key)
    if not events:
        return
    table = Table("time (UTC)", "system", "service", "outcome", "HTTP", "ms")
    table.add_column("detail", overflow="fold")
    for ev in events:
        table.add_row(
            ev.at.strftime("%Y-%m-%d %H:%M:%S"),
            ev.system,
            ev.service,
            ev.outcome,
            str(ev.status_code or ""),
            f"{ev.duration_ms:.0f}" if ev.duration_ms else "",
            escape(ev.detail or ""),
        )
    console.print(table)


@app.command()
def history(
    record_type: Annotated[
        str, typer.Argument(help="customer|site|job|invoice|timecard or a ledger type")
    ],
    record_id: Annotated[str, typer.Argument(help="ServiceTrade id (PO lines: PO:line)")],
    connection: ConnOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    config: ConfigOpt = None,
) -> None:
    """Every step and external write for one record and its parts."""
    import json

    from worker.ledger import RecordKey

    settings = _settings(config)
    led = _ledger(settings)
    key = RecordKey(settings.connection(connection).name, _ledger_type(record_type), record_id)
    rec = led.get(key)
    if rec is None:
        err.print(f"no ledger record for {escape(str(key))}", highlight=False)
        raise typer.Exit(1)
    children = _children(led, key)
    if as_json:
        out = _record_json(led, rec)
        out["children"] = [_record_json(led, c) for c in children]
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    _print_record(led, rec)
    for child in children:
        console.print()
        _print_record(led, child, indent="  ")


def _alert_counts(led: Any) -> dict[Any, tuple[int, int]]:
    """Ledger key -> (alerts, of which not mailed yet)."""
    from worker.ledger import RecordKey

    out: dict[Any, tuple[int, int]] = {}
    for a in led.alerts():
        key = RecordKey(a["connection"], a["record_type"], a["source_id"])
        total, unsent = out.get(key, (0, 0))
        out[key] = (total + 1, unsent + (a["sent_at"] is None))
    return out


def _alerts_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table("#", "time (UTC)", "record", "kind", "mailed (UTC)", title=title)
    table.add_column("message", overflow="fold")
    for a in rows:
        table.add_row(
            str(a["id"]),
            a["at"].strftime("%Y-%m-%d %H:%M"),
            escape(f"{a['connection']}/{a['record_type']}/{a['source_id']}"),
            escape(a["kind"]),
            a["sent_at"].strftime("%Y-%m-%d %H:%M") if a["sent_at"] else "[yellow]no[/yellow]",
            escape(a["message"]),
        )
    return table


@app.command()
def failures(
    connection: ConnOpt = None,
    record_type: Annotated[str | None, typer.Option("--type", "-t")] = None,
    since: Annotated[datetime | None, typer.Option(help="only failures updated since")] = None,
    config: ConfigOpt = None,
) -> None:
    """Records that need a person (failed and unknown) with the reason, and unmailed alerts."""
    from worker.ledger import Status

    settings = _settings(config)
    led = _ledger(settings)
    conn_name = settings.connection(connection).name if connection else None
    rows = led.list_records(
        statuses=(Status.FAILED, Status.UNKNOWN),
        connection=conn_name,
        record_type=_ledger_type(record_type) if record_type else None,
        since=since.replace(tzinfo=since.tzinfo or UTC) if since else None,
    )
    counts = _alert_counts(led)
    table = Table("record", "status", "step")
    table.add_column("reason", overflow="fold", ratio=1)
    for col in ("attempts", "last try (UTC)", "alerts"):
        table.add_column(col)
    for r in rows:
        total, unsent = counts.get(r.key, (0, 0))
        table.add_row(
            escape(str(r.key)),
            r.status.value,
            escape(r.step or "-"),
            escape(r.last_error or ""),
            str(r.attempts),
            r.updated_at.strftime("%Y-%m-%d %H:%M"),
            f"{total} ({unsent} not mailed)" if unsent else str(total or "-"),
        )
    console.print(table)
    console.print(f"{len(rows)} record(s) need attention")
    unmailed = [
        a
        for a in led.unsent_alerts(conn_name)
        if not record_type or a["record_type"] == _ledger_type(record_type)
    ]
    if unmailed:
        console.print(_alerts_table(unmailed, "Alerts not mailed yet"))
        if not settings.alerts.smtp_host:
            console.print(
                "[yellow]alerts are not mailed: \\[alerts] smtp_host is not set[/yellow]; "
                "they stay here until it is"
            )


alerts_app = typer.Typer(help="Alerts for the support contacts.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("list")
def alerts_list(
    connection: ConnOpt = None,
    unsent: Annotated[bool, typer.Option("--unsent", help="only those not mailed yet")] = False,
    config: ConfigOpt = None,
) -> None:
    """Every alert recorded (one per distinct problem per record), mailed or not."""
    settings = _settings(config)
    led = _ledger(settings)
    conn_name = settings.connection(connection).name if connection else None
    rows = (
        led.unsent_alerts(conn_name)
        if unsent
        else [a for a in led.alerts() if conn_name is None or a["connection"] == conn_name]
    )
    console.print(_alerts_table(rows, "Alerts"))
    console.print(f"{len(rows)} alert(s)")


@alerts_app.command("send")
def alerts_send(config: ConfigOpt = None) -> None:
    """Mail the unsent alerts now (what Beat's schedule.send_alerts does every minute)."""
    from worker.alerts import deliver_alerts

    settings = _settings(config)
    result = deliver_alerts(_ledger(settings), settings)
    console.print(
        f"{result.mails} mail(s), {result.alerts_sent} alert(s) sent, {result.deferred} held "
        f"for the next digest, {result.unmailed} not mailable (SMTP or recipients not set)"
    )
    for e in result.errors:
        err.print(f"[red]not sent[/red] {escape(str(e))}", highlight=False)
    raise typer.Exit(1 if result.errors else 0)


_UNKNOWN_WARNING = (
    "[bold red]These records had a write whose outcome is unknown.[/bold red] Replaying one "
    "that did land in Spectrum posts it twice (time paid twice, an invoice entered twice). "
    "Check each one in Spectrum first (stsync history shows the write and its marker)."
)


@app.command()
def retry(
    record_type: Annotated[str | None, typer.Argument(help="record or ledger type")] = None,
    record_id: Annotated[str | None, typer.Argument(help="id (PO lines: PO:line)")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="every failed record")] = False,
    unknown: Annotated[
        bool,
        typer.Option("--unknown", help="also replay records whose outcome is unknown (checked)"),
    ] = False,
    only_type: Annotated[str | None, typer.Option("--type", "-t")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    connection: ConnOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Re-enqueue records after a person fixed the cause (idempotent).

    The ledger skips what is already done. ``--unknown`` replays records left ``unknown``: only
    after you checked Spectrum, or they may be posted twice."""
    from tasks.ops import replay_for
    from worker.ledger import RecordKey, Status

    settings = _settings(config)
    led = _ledger(settings)
    conn_name = settings.connection(connection).name if connection else None
    if record_type and record_id:
        key = RecordKey(settings.connection(connection).name, _ledger_type(record_type), record_id)
        rec = led.get(key)
        if rec is not None and key.record_type == "invoice" and rec.status is Status.DONE:
            # a posted invoice whose void failed: `retry invoice N` means its void
            void = led.get(RecordKey(key.connection, "invoice_void", record_id))
            rec = void if void is not None and void.status is not Status.DONE else rec
        if rec is None:
            err.print(f"no ledger record for {escape(str(key))}", highlight=False)
            raise typer.Exit(1)
        if rec.status is Status.UNKNOWN and not unknown:
            err.print(
                f"{escape(str(key))} is unknown: {escape(rec.last_error or '')}", highlight=False
            )
            err.print(_UNKNOWN_WARNING)
            err.print("After checking, replay it with --unknown.")
            raise typer.Exit(1)
        targets = [rec]
    elif all_failed or unknown:
        statuses = ((Status.FAILED,) if all_failed else ()) + ((Status.UNKNOWN,) if unknown else ())
        targets = led.list_records(
            statuses=statuses,
            record_type=_ledger_type(only_type) if only_type else None,
            connection=conn_name,
            limit=100_000,
        )
    else:
        err.print("give <record-type> <id>, or --all-failed, or --unknown")
        raise typer.Exit(2)
    if any(r.status is Status.UNKNOWN for r in targets):
        err.print(_UNKNOWN_WARNING)
        for r in targets:
            if r.status is Status.UNKNOWN:
                err.print(f"  {escape(str(r.key))}: {escape(r.last_error or '')}", highlight=False)
        if not yes and not typer.confirm("Replay them?", default=False, err=True):
            raise typer.Exit(1)
    celery_app = _configure_celery(settings)
    sent: set[tuple[str, tuple[Any, ...]]] = set()
    skipped = 0
    from cli.invoice_retry import InvoiceRetry

    invoices = InvoiceRetry(lambda: _context(settings), yes=yes, out=console, err=err)
    for rec in targets:
        if rec.status is Status.IN_FLIGHT:
            console.print(f"skip {rec.key}: a worker is syncing it right now")
            skipped += 1
            continue
        if rec.status is Status.DONE:
            console.print(f"skip {rec.key}: already done")
            skipped += 1
            continue
        replay = replay_for(rec.key)
        if replay is None:
            console.print(f"skip {rec.key}: no task replays this record type")
            skipped += 1
            continue
        if not invoices.ready(rec):  # a failed invoice goes back to pending in ServiceTrade
            skipped += 1
            continue
        led.reopen(rec.key)
        if replay in sent:
            continue
        sent.add(replay)
        task, args = replay
        celery_app.send_task(task, args=args)
        console.print(f"enqueued {task}{args!r}", highlight=False)
    invoices.close()
    console.print(f"re-enqueued {len(sent)} task(s) for {len(targets) - skipped} record(s)")
    if record_type and record_id and skipped:
        raise typer.Exit(1)


@config_app.command("check")
def config_check(
    config: ConfigOpt = None,
    remote: Annotated[
        bool, typer.Option("--remote", help="also check codes exist in Spectrum")
    ] = False,
) -> None:
    """Validate the configuration file (and, with --remote, its codes against Spectrum)."""
    settings = _settings(config)
    console.print(
        f"[green]ok[/green] {settings.config_path}: "
        f"{len(settings.connections)} connection(s): {', '.join(settings.connections)}"
    )
    if not remote:
        return
    from cli.config_check import remote_problems

    problems = remote_problems(settings)
    for p in problems:
        console.print(f"[red]missing in Spectrum[/red] {escape(str(p))}", highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print("[green]every configured code exists in Spectrum[/green]")


@broker_app.command("start")
def broker_start(config: ConfigOpt = None) -> None:
    """Start the embedded Redis for the data directory (no-op when running)."""
    from worker import embedded_redis

    settings = _settings(config)
    console.print(embedded_redis.ensure_running(Path(settings.data_dir)))


@broker_app.command("stop")
def broker_stop(config: ConfigOpt = None) -> None:
    """Stop the embedded Redis of the data directory."""
    from worker import embedded_redis

    settings = _settings(config)
    console.print("stopped" if embedded_redis.stop(Path(settings.data_dir)) else "not running")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply the ledger's schema migrations."""
    from worker.ledger import Ledger

    settings = _settings(config)
    Ledger(settings.database_url).migrate()
    console.print("ledger schema is current")


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-n")] = None,
    loglevel: str = "INFO",
    config: ConfigOpt = None,
) -> None:
    """Run a Celery worker (starts the embedded Redis when BROKER_URL is not set)."""
    from cli.schema import require_current_schema
    from worker.celery_app import Queue
    from worker.ledger import make_engine

    settings = _settings(config)
    # the worker never migrates (`stsync db upgrade` does): a ledger behind the code stops it here
    engine = make_engine(settings.database_url)
    try:
        require_current_schema(engine)
    finally:
        engine.dispose()
    celery_app = _configure_celery(settings, start_broker=True)
    from worker.logs import configure_logging

    configure_logging(settings)
    celery_app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency or settings.reliability.worker_concurrency}",
            f"--queues={','.join(q.value for q in Queue)}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def beat(
    loglevel: str = "INFO",
    healthcheck: Annotated[
        bool,
        typer.Option("--healthcheck", help="exit 0 if the running Beat ticked lately, else 1"),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Run Celery Beat (exactly one per deployment)."""
    from cli import beat_health
    from worker.logs import configure_logging

    settings = _settings(config)
    data = Path(settings.data_dir)
    if healthcheck:
        path = beat_health.heartbeat_path(data)
        age = beat_health.heartbeat_age(path)
        if beat_health.healthy(path):
            console.print(f"beat ticked {age:.0f} s ago", highlight=False)
            raise typer.Exit(0)
        err.print(
            f"beat has not ticked for {age:.0f} s"
            if age is not None
            else f"beat never ticked here ({path} missing)",
            highlight=False,
        )
        raise typer.Exit(1)
    celery_app = _configure_celery(settings, start_broker=True)
    configure_logging(settings)
    data.mkdir(parents=True, exist_ok=True)
    celery_app.start(
        [
            "beat",
            f"--loglevel={loglevel}",
            f"--schedule={data / 'celerybeat-schedule'}",
            # a heartbeat file per tick, for the container healthcheck (`beat --healthcheck`)
            "--scheduler=cli.beat_health:HeartbeatScheduler",
            f"--max-interval={beat_health.MAX_INTERVAL_S}",
        ]
    )


@app.command()
def ingest(
    host: str = "127.0.0.1", port: int = 8800, workers: int = 1, config: ConfigOpt = None
) -> None:
    """Serve the webhook ingest endpoint (access log off: the secret is in the path).

    --workers N runs N uvicorn processes on the port (docs/performance.md, P1)."""
    from ingest.serve import serve_ingest
    from worker.logs import configure_logging

    settings = _settings(config)
    _configure_celery(settings, start_broker=True)
    configure_logging(settings)
    serve_ingest(settings, host, port, workers=workers)


#: the columns of Flower's task list: which record (args), how it ended (result: synced, adopted,
#: unchanged, skipped; a failed record's reason is its exception)
FLOWER_TASK_COLUMNS = "name,uuid,state,args,result,exception,received,started,runtime,worker"


def flower_command(
    settings: Settings, *, insecure_local: bool, port: int | None, address: str | None
) -> tuple[list[str], dict[str, str]]:
    """The Flower command line and environment; ConfigError-free. Exit 2 without credentials.

    The password travels in the environment (``FLOWER_BASIC_AUTH``), never on the command line
    where ``ps`` shows it. Flower loads the stsync app (``-A worker.celery_app``) so it sees the
    stsync queues and honours the Redis key prefix.
    """
    from worker.celery_app import resolve_broker_url

    fl = settings.flower
    env = dict(os.environ)
    env.pop("FLOWER_BASIC_AUTH", None)
    if fl.user and fl.password:
        env["FLOWER_BASIC_AUTH"] = f"{fl.user}:{fl.password.get_secret_value()}"
    elif not insecure_local:
        err.print(
            "[red]refusing to start Flower without credentials[/red]: set FLOWER_USER and "
            "FLOWER_PASSWORD (or pass --insecure-local on a machine only you can reach)"
        )
        raise typer.Exit(2)
    env["BROKER_URL"] = resolve_broker_url(settings, start=True)
    env["STSYNC_AUTOCONFIGURE"] = "1"
    if settings.config_path:
        env[CONFIG_ENV] = settings.config_path
    bind = address or ("127.0.0.1" if insecure_local or not fl.password else "0.0.0.0")
    cmd = [
        sys.executable,
        "-m",
        "cli.flower",  # celery ... flower, with /metrics behind the same login
        "-A",
        "worker.celery_app",
        "flower",
        f"--port={port or fl.port}",
        f"--address={bind}",
        "--max_tasks=10000",
        f"--tasks_columns={FLOWER_TASK_COLUMNS}",
    ]
    return cmd, env


@app.command()
def flower(
    insecure_local: Annotated[
        bool, typer.Option("--insecure-local", help="no login; listen on 127.0.0.1 only")
    ] = False,
    port: Annotated[int | None, typer.Option()] = None,
    address: Annotated[str | None, typer.Option(help="listen address")] = None,
    config: ConfigOpt = None,
) -> None:
    """Start Flower (the task dashboard) on the configured broker, behind basic auth."""
    settings = _settings(config)
    from cli.children import run_forwarding_signals

    cmd, env = flower_command(settings, insecure_local=insecure_local, port=port, address=address)
    raise typer.Exit(run_forwarding_signals(cmd, env))


# --- preview, PO poll, catch-up -----------------------------------------------------------------
def _preview_context(settings: Settings) -> Any:
    from cli.preview import preview_context

    return preview_context(settings)


def _print_preview(p: Any) -> None:
    style = {"would_send": "green", "nothing_to_send": "green"}.get(p.status, "red")
    console.print(
        f"[bold]{p.connection}/{p.record_type}/{p.record_id}[/bold]: [{style}]{p.status}[/{style}]"
        + (f" - {escape(p.reason)}" if p.reason else ""),
        highlight=False,
    )
    for i, call in enumerate(p.calls, 1):
        where = "Spectrum" if call.system == "spectrum" else "ServiceTrade"
        console.print(
            f"\n[bold]{i}. {where} {call.service}[/bold]  ({call.record})"
            + (f"  [dim]{escape(call.note)}[/dim]" if call.note else ""),
            highlight=False,
        )
        if "invoices" in call.values:
            for doc in call.values["invoices"]:
                _print_values("header", doc["header"])
                for n, line in enumerate(doc["details"], 1):
                    _print_values(f"detail {n}", line)
        else:
            _print_values("", call.values)
    for note in p.notes:
        console.print(f"[dim]note:[/dim] {escape(note)}", highlight=False)
    for problem in p.problems:
        console.print(f"[red]cannot send:[/red] {escape(problem)}", highlight=False)


def _print_values(title: str, values: dict[str, Any]) -> None:
    table = Table("element", title=title or None, title_justify="left", box=None)
    table.add_column("value", overflow="fold")
    for k, v in values.items():
        if v not in ("", None):
            table.add_row(escape(str(k)), escape(str(v)))
    console.print(table)


@app.command()
def preview(
    record_type: Annotated[
        str, typer.Argument(help="customer|site|job|work_order|invoice|timecard")
    ],
    record_id: Annotated[int, typer.Argument(help="ServiceTrade id")],
    connection: ConnOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    recheck_unknown: Annotated[
        bool, typer.Option("--recheck-unknown", help="timecards: include unknown entries")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Dry run: what a sync would send to Spectrum (per call, in order), writing nothing.

    Exit 0 when it could be sent (or nothing needs sending), 1 with the reason when not."""
    import json

    from cli.preview import KINDS, preview_record

    if record_type not in KINDS:
        err.print(f"[red]unknown record type {record_type!r}[/red]; one of: {', '.join(KINDS)}")
        raise typer.Exit(2)
    settings = _settings(config)
    conn = settings.connection(connection).name
    ctx = _preview_context(settings)
    try:
        result = preview_record(ctx, record_type, record_id, conn, recheck_unknown=recheck_unknown)
    finally:
        ctx.close()
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        _print_preview(result)
    raise typer.Exit(0 if result.ok else 1)


@app.command("poll-pos")
def poll_pos(
    connection: ConnOpt = None,
    now: Annotated[bool, typer.Option("--now", help="poll here instead of enqueueing")] = False,
    config: ConfigOpt = None,
) -> None:
    """Poll Spectrum purchase orders into ServiceTrade job items: enqueue, or run now."""
    settings = _settings(config)
    conn = settings.connection(connection).name
    if not now:
        celery_app = _configure_celery(settings)
        celery_app.send_task("schedule.po_poll", args=(conn,))
        console.print(f"enqueued schedule.po_poll({conn!r})")
        return
    from cli import progress as bars
    from tasks.purchase_order import run_po_poll

    ctx = _context(settings)
    try:
        with bars.spinner(console) as bar:
            task = bar.add_task(f"{conn}: PO lines handled: 0", total=None)
            handled = 0

            def progress(n: int) -> None:
                nonlocal handled
                handled += n
                bar.update(task, description=f"{conn}: PO lines handled: {handled}")

            try:
                summary = run_po_poll(ctx, conn, progress=progress)
            except SyncError as exc:
                raise cli_errors.stopped("PO poll", exc) from None
    finally:
        ctx.close()
    console.print(summary.describe(), highlight=False)
    raise typer.Exit(1 if summary.failed else 0)


def _local_day(value: str, tz: str, *, end: bool = False) -> datetime:
    from datetime import date, time, timedelta
    from zoneinfo import ZoneInfo

    try:
        day = date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]not a date (YYYY-MM-DD): {value!r}[/red]")
        raise typer.Exit(2) from None
    if end:
        day += timedelta(days=1)
    return datetime.combine(day, time(0), ZoneInfo(tz))


@app.command("catch-up")
def catch_up(
    since: Annotated[str, typer.Option(help="first day, YYYY-MM-DD (account time zone)")],
    until: Annotated[str | None, typer.Option(help="last day, YYYY-MM-DD (default: now)")] = None,
    connection: ConnOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Timecard catch-up now: sync every approved entry of the window not yet in Spectrum."""
    from cli import progress as bars

    try:
        from tasks.timecard import run_catch_up
    except ImportError:  # pragma: no cover - the timecard module ships it
        err.print("[red]the timecard catch-up is not available in this build[/red]")
        raise typer.Exit(2) from None
    settings = _settings(config)
    conn = settings.connection(connection).name
    start = _local_day(since, settings.timezone)
    stop = _local_day(until, settings.timezone, end=True) if until else datetime.now(UTC)
    if stop <= start:
        err.print("[red]--until is before --since[/red]")
        raise typer.Exit(2)
    ctx = _context(settings)
    from worker.context import attach_read_cache

    attach_read_cache(ctx)  # job facts read once per job, as the workers do
    try:
        with bars.counting(console) as bar:
            task = bar.add_task(f"{conn}: timecards", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                summary = run_catch_up(ctx, start, stop, progress, connection=conn)
            except SyncError as exc:
                raise cli_errors.stopped("catch-up", exc) from None
    finally:
        ctx.close()
    console.print(summary.line(), highlight=False)
    for e in summary.errors:
        err.print(f"[yellow]{escape(str(e))}[/yellow]", highlight=False)
    raise typer.Exit(1 if summary.failed or summary.errors else 0)


@app.command()
def backfill(
    record_type: Annotated[str, typer.Argument(help="customer|site|job|invoice|timecard")],
    since: Annotated[str, typer.Option(help="first day, YYYY-MM-DD (account time zone)")],
    connection: ConnOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Queue every record ServiceTrade lists as changed since a day (timecards: approved since).

    For records that changed before stsync was installed, or while it was stopped longer than the
    sweep looks back. Safe to repeat: each sync is idempotent, done records stay done."""
    from cli import progress as bars
    from cli.records import list_ids_since

    settings = _settings(config)
    conn = settings.connection(connection).name
    routed = _routed(record_type)
    entity, task = routed.entity, routed.task
    start = _local_day(since, settings.timezone)
    celery_app = _configure_celery(settings)
    ctx = _context(settings)
    try:
        with bars.counting(console, of_total=False) as bar:
            listing = bar.add_task(f"listing {entity} records in ServiceTrade", total=None)
            ids = list(
                list_ids_since(
                    ctx,
                    entity,
                    int(start.timestamp()),
                    int(datetime.now(UTC).timestamp()),
                    lambda n: bar.advance(listing, n),
                )
            )
            bar.update(listing, total=len(ids), completed=len(ids))
            queued = bar.add_task(f"enqueueing {task}", total=len(ids))
            for record_id in dict.fromkeys(ids):
                celery_app.send_task(task, args=(record_id, conn))
                bar.advance(queued)
    except SyncError as exc:
        raise cli_errors.stopped("backfill", exc) from None
    finally:
        ctx.close()
    console.print(
        f"enqueued {len(dict.fromkeys(ids))} {task} task(s) for {conn!r}: {entity} records "
        f"changed since {since}",
        highlight=False,
    )


@sandbox_app.command("up")
def sandbox_up(
    st_port: int = 8801,
    spectrum_port: int = 8802,
    data_dir: Path = Path(".stsync/sandbox"),
    companies: int = 5,
    seed: int = 42,
) -> None:
    """Run both simulators on loopback (Ctrl-C stops them)."""
    cmd = [
        sys.executable,
        "-m",
        "sandbox",
        "up",
        "--st-port",
        str(st_port),
        "--spectrum-port",
        str(spectrum_port),
        "--data-dir",
        str(data_dir),
        "--companies",
        str(companies),
        "--seed",
        str(seed),
    ]
    from cli.children import run_forwarding_signals

    raise typer.Exit(run_forwarding_signals(cmd))


@app.command()
def demo(
    companies: Annotated[int, typer.Option(help="seeded customer companies")] = 4,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the pipeline")] = 180.0,
    data_dir: Path = Path(".stsync/demo"),
    keep: Annotated[bool, typer.Option(help="leave the services running")] = False,
) -> None:
    """Run everything on the embedded default and show what lands in Spectrum."""
    from cli.demo import run_demo

    raise typer.Exit(
        run_demo(
            data_dir=data_dir, companies=companies, timeout=timeout, keep=keep, console=console
        )
    )


from cli.link import register as _register_link  # noqa: E402 - needs the helpers above

_register_link(app, lambda: console, lambda s: _context(s), lambda c: _settings(c))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
