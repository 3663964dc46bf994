"""``stsync``: the command line for the people who run the integration (F17).

Every command names its connection (``--connection``, default: the configured default). Commands
that need the config read ``--config`` or ``STSYNC_CONFIG``; a bad config stops with the key named.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clients.errors import ConfigError, SyncError
from worker.settings import CONFIG_ENV, Settings, load_settings

app = typer.Typer(
    help="stsync: keep ServiceTrade and Trimble Spectrum in step.", no_args_is_help=True
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

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-C", help="stsync.toml (default: $STSYNC_CONFIG)")
]
ConnOpt = Annotated[str | None, typer.Option("--connection", "-c", help="Spectrum connection name")]


def _settings(config: Path | None) -> Settings:
    try:
        s = load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]configuration error[/red]\n{exc}")
        raise typer.Exit(2) from None
    if config:
        os.environ[CONFIG_ENV] = str(config)
    return s


def _context(settings: Settings) -> Any:
    from worker.context import build_context, set_process_context

    ctx = build_context(settings)
    ctx.ledger.migrate()
    set_process_context(ctx)
    return ctx


def _configure_celery(settings: Settings, *, start_broker: bool = False) -> Any:
    from tasks._celery import apply_reliability
    from worker.celery_app import configure

    try:
        celery_app = configure(settings, start_broker=start_broker)
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    apply_reliability(settings.reliability)
    return celery_app


def _entity(record_type: str) -> tuple[str, str, str]:
    from worker.routing import ENTITY_TASKS, RECORD_TYPES

    entity = RECORD_TYPES.get(record_type)
    if entity is None:
        err.print(
            f"[red]unknown record type {record_type!r}[/red]; one of: "
            f"{', '.join(sorted(RECORD_TYPES))}"
        )
        raise typer.Exit(2)
    task, ledger_type = ENTITY_TASKS[entity]
    return entity, task, ledger_type


def _sync_function(entity: str) -> Any:
    import importlib

    module, fn = {
        "company": ("tasks.customer", "sync_customer"),
        "location": ("tasks.site", "sync_site"),
        "job": ("tasks.job", "sync_job"),
        "invoice": ("tasks.invoice", "sync_invoice"),
        "timecard": ("tasks.timecard", "sync_timecard"),
    }[entity]
    try:
        return getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError):
        err.print(f"[red]{entity} sync is not available in this build[/red]")
        raise typer.Exit(2) from None


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
    entity, task, _ = _entity(record_type)
    if now:
        ctx = _context(settings)
        try:
            outcome = _sync_function(entity)(ctx, record_id, conn)
        except SyncError as exc:
            err.print(f"[yellow]not finished[/yellow] ({type(exc).__name__}): {exc}")
            raise typer.Exit(1) from None
        style = "green" if outcome.ok else "red"
        console.print(
            f"[{style}]{outcome.result}[/{style}] {outcome.key} "
            f"spectrum={outcome.spectrum_key or '-'} {outcome.message}"
        )
        raise typer.Exit(0 if outcome.ok or outcome.result == "skipped" else 1)
    celery_app = _configure_celery(settings)
    celery_app.send_task(task, args=(record_id, conn))
    console.print(f"enqueued {task}({record_id}, {conn!r})")


@app.command("send-job")
def send_job(
    job_id: Annotated[int, typer.Argument(help="ServiceTrade job id")],
    connection: Annotated[str, typer.Option("--connection", "-c", help="Spectrum connection")],
    config: ConfigOpt = None,
) -> None:
    """ "Send Job to Spectrum": enqueue the job's send for a named connection."""
    settings = _settings(config)
    conn = settings.connection(connection).name
    celery_app = _configure_celery(settings)
    celery_app.send_task("sync.job.send", args=(job_id, conn))
    console.print(f"enqueued sync.job.send({job_id}, {conn!r})")


@app.command()
def status(connection: ConnOpt = None, config: ConfigOpt = None) -> None:
    """Counts of records by type and status (from the ledger)."""
    from worker.ledger import Ledger

    settings = _settings(config)
    led = Ledger(settings.database_url)
    led.migrate()
    counts = led.counts(settings.connection(connection).name if connection else None)
    table = Table("record type", "status", "count")
    for (rtype, st), n in sorted(counts.items()):
        table.add_row(rtype, st, str(n))
    console.print(table)


@app.command()
def history(
    record_type: str, record_id: str, connection: ConnOpt = None, config: ConfigOpt = None
) -> None:
    """Every step and external write for one record (F19)."""
    from worker.ledger import Ledger, RecordKey

    settings = _settings(config)
    led = Ledger(settings.database_url)
    led.migrate()
    _, _, ledger_type = (
        _entity(record_type)
        if record_type in ("customer", "company", "site", "location", "job", "invoice", "timecard")
        else ("", "", record_type)
    )
    key = RecordKey(settings.connection(connection).name, ledger_type, record_id)
    rec = led.get(key)
    if rec is None:
        err.print(f"no ledger record for {key}")
        raise typer.Exit(1)
    console.print(
        f"[bold]{key}[/bold] status={rec.status.value} spectrum={rec.spectrum_key or '-'} "
        f"attempts={rec.attempts} step={rec.step or '-'}"
    )
    if rec.last_error:
        console.print(f"  last error ({rec.error_kind}): {rec.last_error}")
    for adj in rec.state.get("adjustments", []):
        console.print(f"  adjusted: {adj}")
    table = Table("time (UTC)", "system", "service", "outcome", "HTTP", "ms", "detail")
    for ev in led.history(key):
        table.add_row(
            ev.at.strftime("%Y-%m-%d %H:%M:%S"),
            ev.system,
            ev.service,
            ev.outcome,
            str(ev.status_code or ""),
            f"{ev.duration_ms:.0f}" if ev.duration_ms else "",
            (ev.detail or "")[:80],
        )
    console.print(table)


@app.command()
def failures(
    connection: ConnOpt = None,
    record_type: Annotated[str | None, typer.Option("--type", "-t")] = None,
    since: Annotated[datetime | None, typer.Option(help="only failures updated since")] = None,
    config: ConfigOpt = None,
) -> None:
    """Records that need a person: failed and unknown, with the reason."""
    from worker.ledger import Ledger, Status

    settings = _settings(config)
    led = Ledger(settings.database_url)
    led.migrate()
    rows = led.list_records(
        statuses=(Status.FAILED, Status.UNKNOWN),
        connection=settings.connection(connection).name if connection else None,
        record_type=record_type,
        since=since.replace(tzinfo=since.tzinfo or UTC) if since else None,
    )
    table = Table("record", "status", "step", "reason", "attempts", "last try (UTC)")
    for r in rows:
        table.add_row(
            str(r.key),
            r.status.value,
            r.step or "-",
            (r.last_error or "")[:120],
            str(r.attempts),
            r.updated_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
    console.print(f"{len(rows)} record(s) need attention")


@app.command()
def retry(
    record_type: Annotated[str | None, typer.Argument()] = None,
    record_id: Annotated[str | None, typer.Argument()] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed")] = False,
    only_type: Annotated[str | None, typer.Option("--type", "-t")] = None,
    connection: ConnOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Re-enqueue failed records after the cause was fixed (idempotent)."""
    from worker.ledger import Ledger, RecordKey, Status
    from worker.routing import ENTITY_TASKS

    settings = _settings(config)
    led = Ledger(settings.database_url)
    led.migrate()
    by_ledger_type = {rt: task for task, rt in ENTITY_TASKS.values()}
    if all_failed:
        targets = led.list_records(
            statuses=(Status.FAILED,),
            record_type=only_type,
            connection=settings.connection(connection).name if connection else None,
        )
        keys = [r.key for r in targets]
    elif record_type and record_id:
        _, _, ledger_type = _entity(record_type)
        keys = [RecordKey(settings.connection(connection).name, ledger_type, record_id)]
    else:
        err.print("give <record-type> <id>, or --all-failed")
        raise typer.Exit(2)
    celery_app = _configure_celery(settings)
    sent = 0
    for key in keys:
        task = by_ledger_type.get(key.record_type)
        if task is None or not key.source_id.isdigit():
            console.print(f"skip {key}: replay it through its parent record")
            continue
        led.reopen(key)
        celery_app.send_task(task, args=(int(key.source_id), key.connection))
        sent += 1
    console.print(f"re-enqueued {sent} record(s)")


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
    from worker.config_check import remote_problems

    problems = remote_problems(settings)
    for p in problems:
        console.print(f"[red]missing in Spectrum[/red] {p}")
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
    from worker.celery_app import Queue

    settings = _settings(config)
    celery_app = _configure_celery(settings, start_broker=True)
    from worker.ledger import Ledger

    Ledger(settings.database_url).migrate()
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
def beat(loglevel: str = "INFO", config: ConfigOpt = None) -> None:
    """Run Celery Beat (exactly one per deployment)."""
    settings = _settings(config)
    celery_app = _configure_celery(settings, start_broker=True)
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    celery_app.start(
        ["beat", f"--loglevel={loglevel}", f"--schedule={data / 'celerybeat-schedule'}"]
    )


@app.command()
def ingest(host: str = "127.0.0.1", port: int = 8800, config: ConfigOpt = None) -> None:
    """Serve the webhook ingest endpoint (access log off: the secret is in the path)."""
    import uvicorn

    from worker.ingest import create_ingest_app
    from worker.logs import configure_logging

    settings = _settings(config)
    _configure_celery(settings, start_broker=True)
    configure_logging(settings)
    uvicorn.run(
        create_ingest_app(settings), host=host, port=port, access_log=False, log_level="warning"
    )


@app.command()
def flower(
    insecure_local: Annotated[bool, typer.Option("--insecure-local")] = False,
    port: Annotated[int | None, typer.Option()] = None,
    config: ConfigOpt = None,
) -> None:
    """Start Flower on the configured broker, behind basic auth (F16)."""
    from worker.celery_app import resolve_broker_url

    settings = _settings(config)
    fl = settings.flower
    env = dict(os.environ)
    if fl.user and fl.password:
        env["FLOWER_BASIC_AUTH"] = f"{fl.user}:{fl.password.get_secret_value()}"
    elif not insecure_local:
        err.print(
            "[red]refusing to start Flower without credentials[/red]: set FLOWER_USER and "
            "FLOWER_PASSWORD (or pass --insecure-local on a machine only you can reach)"
        )
        raise typer.Exit(2)
    broker = resolve_broker_url(settings, start=True)
    cmd = [
        sys.executable,
        "-m",
        "celery",
        f"--broker={broker}",
        "flower",
        f"--port={port or fl.port}",
        "--address=127.0.0.1" if insecure_local else "--address=0.0.0.0",
        "--max_tasks=10000",
    ]
    raise typer.Exit(subprocess.call(cmd, env=env))


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
    raise typer.Exit(subprocess.call(cmd))


@app.command()
def demo(
    companies: Annotated[int, typer.Option(help="seeded customer companies")] = 4,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the pipeline")] = 180.0,
    data_dir: Path = Path(".stsync/demo"),
    keep: Annotated[bool, typer.Option(help="leave the services running")] = False,
) -> None:
    """Run everything on the embedded default and show what lands in Spectrum."""
    from worker.demo import run_demo

    raise typer.Exit(
        run_demo(
            data_dir=data_dir, companies=companies, timeout=timeout, keep=keep, console=console
        )
    )


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
