"""The CLI an operator can trust: every common mistake ends with one clear line and a non-zero
exit (never a traceback), reasons keep their bracketed parts and are folded (never cut), read-only
commands and the worker never migrate, ``--version``, user words in help, ``send-job`` defaults
to the only connection, ``status`` shows the scheduled runs and what synced, ``backfill``."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import PG_URL
from tests.ops.conftest import Published
from tests.ops.smtp import free_port
from worker.ledger import Ledger, RecordKey, Status

runner = CliRunner()

REASON = (
    'Spectrum has no salesperson for ServiceTrade user 1026 (Dana Sales): add "1026" to '
    "[connections.main.salespeople] in stsync.toml, or give the user a Spectrum id in "
    "ServiceTrade, then approve the invoice again; until then the invoice stays failed and "
    "nothing was written to Spectrum for it"
)


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def one_line_error(res: Any) -> str:
    """The error text, asserting it is not a traceback."""
    out = res.output
    assert "Traceback" not in out and 'File "' not in out, out
    return " ".join(out.split())


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cli.main.console", Console(width=200, color_system=None))
    monkeypatch.setattr("cli.main.err", Console(width=200, color_system=None, stderr=True))


# --- mistakes: one line, non-zero exit -----------------------------------------------------------
def test_cli_errors_unknown_connection(cli_env: Any) -> None:
    res = run("sync", "invoice", "1", "-c", "foo")
    assert res.exit_code == 2
    assert "unknown connection 'foo'; configured: main" in one_line_error(res)
    res = run("history", "invoice", "1", "-c", "foo")
    assert res.exit_code == 2 and "unknown connection 'foo'" in one_line_error(res)


def test_cli_errors_broker_down(cli_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    res = run("sync", "invoice", "1")
    assert res.exit_code == 3
    line = one_line_error(res)
    assert "cannot reach the broker" in line and "is Redis running?" in line


def test_cli_errors_database_down(cli_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", f"postgresql+psycopg://root:s3cret-pw@127.0.0.1:{free_port()}/stsync"
    )
    res = run("status")
    assert res.exit_code == 3
    line = one_line_error(res)
    assert "cannot reach the ledger database" in line and "DATABASE_URL" in line
    assert "s3cret-pw" not in line


def test_cli_errors_record_not_in_servicetrade(cli_env: Any, cli_ctx: Any) -> None:
    res = run("sync", "invoice", "999999", "--now")
    assert res.exit_code == 1
    assert "ServiceTrade has no invoice 999999" in one_line_error(res)


@pytest.mark.postgres
def test_cli_errors_read_only_database_role(cli_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = create_engine(PG_URL)
    try:
        with probe.connect() as c:
            c.execute(text("select 1"))
    except Exception:  # noqa: BLE001
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL}; start it (see README)")
    finally:
        probe.dispose()
    schema = f"ro_{uuid.uuid4().hex[:10]}"
    role = f"ro_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'create schema "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    led = Ledger(url)
    try:
        led.migrate()
        key = RecordKey("main", "invoice", "1036")
        led.ensure(key)
        led.mark(key, Status.FAILED, error_kind="test", reason=REASON)
        with admin.connect() as c:
            c.execute(text(f'create role "{role}" login'))
            c.execute(text(f'grant usage on schema "{schema}" to "{role}"'))
            c.execute(text(f'grant select on all tables in schema "{schema}" to "{role}"'))
        ro_url = url.replace("postgresql+psycopg://root@", f"postgresql+psycopg://{role}@")
        monkeypatch.setenv("DATABASE_URL", ro_url)
        # reading works with the read-only role
        assert run("failures").exit_code == 0
        res = run("retry", "invoice", "1036")
        assert res.exit_code == 3
        line = one_line_error(res)
        assert "the ledger database refuses to write" in line and "permission denied" in line
    finally:
        led.dispose()
        with admin.connect() as c:
            c.execute(text(f'drop schema "{schema}" cascade'))
            c.execute(text(f'drop role if exists "{role}"'))
        admin.dispose()


# --- no migrations outside `stsync db upgrade` ---------------------------------------------------
def test_cli_errors_read_only_commands_and_worker_never_migrate(
    cli_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    monkeypatch.setenv("DATABASE_URL", url)
    for args in (
        ("status",),
        ("failures",),
        ("history", "invoice", "1"),
        ("alerts", "list"),
        ("worker",),
    ):
        res = run(*args)
        assert res.exit_code == 2, (args, res.output)
        line = one_line_error(res)
        assert "has no schema yet: run `stsync db upgrade` first" in line, (args, line)
    engine = create_engine(url)
    assert inspect(engine).get_table_names() == []  # nothing created the tables
    engine.dispose()
    assert run("db", "upgrade").exit_code == 0
    assert run("status").exit_code == 0


# --- reasons: escaped for Rich, folded, never cut ------------------------------------------------
def test_cli_errors_reasons_keep_brackets_and_are_folded_not_cut(
    cli_env: Any, ledger: Any, wide: None
) -> None:
    key = RecordKey("main", "invoice", "1036")
    ledger.ensure(key)
    ledger.mark(key, Status.FAILED, error_kind="prerequisite", reason=REASON)
    ledger.record_alert(key, kind="prerequisite", problem_key="p1", message=f"{key}: {REASON}")
    history = run("history", "invoice", "1036")
    assert history.exit_code == 0
    assert REASON in " ".join(history.output.split())
    for args in (("failures",), ("alerts", "list")):
        res = run(*args)
        assert res.exit_code == 0
        assert "…" not in res.output and "..." not in res.output
        for word in REASON.split():
            assert word in res.output, (args, word)
        assert "[connections.main.salespeople]" in res.output, args


# --- version, help, send-job ---------------------------------------------------------------------
def test_cli_errors_version_and_help_in_user_words() -> None:
    from importlib.metadata import version

    res = run("--version")
    assert res.exit_code == 0 and res.output.strip() == f"stsync {version('stsync')}"
    commands: list[tuple[str, ...]] = [()]
    top = run("--help").output
    commands += [(m,) for m in re.findall(r"│ (\w[\w-]+)\s", top)]
    for sub in ("config", "broker", "db", "sandbox", "alerts"):
        commands += [(sub, m) for m in re.findall(r"│ (\w[\w-]+)\s", run(sub, "--help").output)]
    assert ("backfill",) in commands and ("status",) in commands
    for cmd in commands:
        out = run(*cmd, "--help").output
        assert not re.search(r"\(F\d+\)", out), (cmd, out)


def test_cli_errors_send_job_defaults_to_the_only_connection(
    cli_env: Any, published: list[Published]
) -> None:
    res = run("send-job", "52001")
    assert res.exit_code == 0, res.output
    assert [(p.task, p.args) for p in published] == [("sync.job.send", (52001, "main"))]


def test_cli_errors_send_job_asks_which_of_several_connections(
    cli_env: Any, published: list[Published], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = Path(cli_env["STSYNC_CONFIG"])
    text_ = config.read_text()
    second = re.search(r"(?ms)^\[connections\.main\].*?(?=^\[(?!connections\.main))", text_)
    assert second is not None
    block = second.group(0).replace("[connections.main", "[connections.east")
    block = block.replace(
        "[connections.east]\n", '[connections.east]\nauthorization_id_env = "EAST_AUTH_ID"\n', 1
    )
    block = block.replace('external_id_key = "spectrum"', 'external_id_key = "spectrum_east"')
    monkeypatch.setenv("EAST_AUTH_ID", "east-authorization-id")
    two = tmp_path / "two.toml"
    two.write_text(text_ + "\n" + block)
    monkeypatch.setenv("STSYNC_CONFIG", str(two))
    res = run("send-job", "52001")
    assert res.exit_code == 2, res.output
    assert "--connection one of east, main" in one_line_error(res)
    assert published == []
    assert run("send-job", "52001", "-c", "east").exit_code == 0
    assert [(p.task, p.args) for p in published] == [("sync.job.send", (52001, "east"))]


# --- status: scheduled runs, what synced ---------------------------------------------------------
def next_in_minutes(line: str) -> int:
    m = re.search(r"\(in (\d+) min\)", line)
    assert m, line
    return int(m.group(1))


def test_cli_errors_status_shows_scheduled_runs_and_what_synced_since(
    cli_env: Any, ledger: Any, settings: Any, wide: None
) -> None:
    from tasks.purchase_order import WATERMARK

    res = run("status")
    assert res.exit_code == 0
    out = res.output
    assert "missed-change sweep" in out and "PO poll" in out and "timecard catch-up" in out
    assert "not yet" in out  # nothing ran yet
    ledger.set_watermark("main", "sweep:invoice", "1700000000")
    ledger.set_watermark("main", WATERMARK, "2026-01-01T00:00:00+00:00")
    done = RecordKey("main", "invoice", "1036")
    ledger.ensure(done)
    ledger.mark_done(done, spectrum_key="ST1036", payload_digest=None, state={})
    out = run("status", "--since", "today").output
    # last run: just now; next run: one interval later (10 and 15 min in the demo config)
    sweep = next(line for line in out.splitlines() if "missed-change" in line)
    assert "min ago" in sweep and 5 <= next_in_minutes(sweep) <= 10, sweep
    poll = next(line for line in out.splitlines() if "PO poll" in line)
    assert "min ago" in poll and 10 <= next_in_minutes(poll) <= 15, poll
    assert "synced since" in out and "1 invoice" in out
    assert "main/invoice/1036" in out and "ST1036" in out
    later = run("status", "--since", (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d"))
    assert "synced since" in later.output and ": nothing" in later.output
    bad = run("status", "--since", "lastweek")
    assert bad.exit_code == 2 and "give today, yesterday" in one_line_error(bad)


def test_cli_errors_next_catch_up_is_the_weekly_time_in_the_account_zone() -> None:
    from cli.status import next_weekly

    # Sunday 2026-12-06 12:00 UTC = 07:00 in New York -> Monday 02:00 EST = 07:00 UTC
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert next_weekly(now, "America/New_York", "mon", 2, 0) == datetime(
        2026, 12, 7, 7, 0, tzinfo=UTC
    )
    # exactly at the time: the next week
    at = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    assert next_weekly(at, "America/New_York", "mon", 2, 0) == datetime(
        2026, 12, 14, 7, 0, tzinfo=UTC
    )


# --- backfill ------------------------------------------------------------------------------------
def test_cli_errors_backfill_enqueues_what_servicetrade_lists_since(
    cli_env: Any, cli_ctx: Any, st_state: Any, published: list[Published]
) -> None:
    res = run("backfill", "invoice", "--since", "2000-01-01")
    assert res.exit_code == 0, res.output
    expected = {(inv["id"], "main") for inv in st_state.all("invoice")}
    assert expected and {p.args for p in published if p.task == "sync.invoice"} == expected
    assert f"enqueued {len(expected)} sync.invoice task(s)" in " ".join(res.output.split())
    published.clear()
    future = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d")
    res = run("backfill", "job", "--since", future)
    assert res.exit_code == 0 and published == []
    assert run("backfill", "gizmo", "--since", "2000-01-01").exit_code == 2


def test_cli_errors_explain_classifies_by_cause() -> None:
    """The mapping itself, for causes the end-to-end tests above do not reach (SQLite read-only,
    a broker error wrapped by kombu, something unexpected): one line, the right exit code."""
    import sqlite3

    import kombu.exceptions
    import redis.exceptions
    import sqlalchemy.exc as sa_exc

    from cli.errors import UNAVAILABLE, UNEXPECTED, USAGE, SchemaNotCurrent, explain

    ro = sa_exc.OperationalError(
        "INSERT ...", {}, sqlite3.OperationalError("attempt to write a readonly database")
    )
    code, line = explain(ro, database_url="sqlite:////srv/ledger.sqlite")
    assert code == UNAVAILABLE and "refuses to write" in line and "\n" not in line
    try:
        try:
            raise redis.exceptions.ConnectionError("Error 111 connecting to redis:6379.")
        except redis.exceptions.ConnectionError as inner:
            raise kombu.exceptions.OperationalError(str(inner)) from inner
    except kombu.exceptions.OperationalError as wrapped:
        code, line = explain(wrapped, broker_url="redis://:pw@redis:6379/0")
    assert code == UNAVAILABLE and "cannot reach the broker" in line and ":pw@" not in line
    code, line = explain(SchemaNotCurrent("run `stsync db upgrade`"))
    assert code == USAGE and "ledger not migrated" in line
    code, line = explain(ValueError("boom\nsecond line"))
    assert code == UNEXPECTED and "STSYNC_DEBUG=1" in line and "second line" not in line
    # markup in a reason is escaped, not interpreted
    code, line = explain(SchemaNotCurrent("add it to [connections.main]"))
    assert "\\[connections.main]" in line
