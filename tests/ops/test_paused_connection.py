"""Credential failures are a connection problem, not a record problem (issue 14).

A refused Authorization ID (or ServiceTrade credentials refused after a fresh token) leaves the
record retryable, pauses its connection, alerts once per hour, shows in ``stsync status`` and
resumes by itself with the next success (re-enqueueing what waited) or after ``stsync doctor``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import webhook
from cli.main import app
from clients.servicetrade.client import ServiceTradeClient
from sandbox import credentials
from tasks.customer import sync_customer
from tests.conftest import asgi_transport
from tests.ops.conftest import Published
from worker import pause
from worker.ledger import RecordKey, Status

runner = CliRunner()
AUTH = credentials.SPECTRUM_AUTHORIZATION_ID


def customers(world: Any) -> list[int]:
    return [c["id"] for c in world.servicetrade["company"] if not c.get("isVendor")]


def connection_alerts(ledger: Any) -> list[dict[str, Any]]:
    return [a for a in ledger.alerts() if a["record_type"] == pause.CONNECTION]


def test_paused_connection_keeps_records_pending_alerts_once_and_resumes(
    ctx: Any,
    world: Any,
    spectrum_app: Any,
    enqueued: list[tuple[str, tuple[Any, ...]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ids = customers(world)[:3]
    spectrum_app.state.admin.authorize(
        AUTH, "AddCustomer", False
    )  # e.g. a rebuilt Authorization ID
    with caplog.at_level(logging.INFO, logger="stsync.sync"):
        first = sync_customer(ctx, ids[0], "main")
        second = sync_customer(ctx, ids[1], "main")
    for out, cid in ((first, ids[0]), (second, ids[1])):
        assert out.result == "paused" and not out.ok
        rec = ctx.ledger.get(RecordKey("main", "customer", str(cid)))
        assert rec.status is Status.PENDING and rec.error_kind == pause.ERROR_KIND
        assert "credentials refused" in (rec.last_error or "")
    # one alert for the connection, not one per record
    alerts = connection_alerts(ctx.ledger)
    assert len(alerts) == 1 and alerts[0]["connection"] == "main"
    assert "paused" in alerts[0]["message"] and "stsync doctor" in alerts[0]["message"]
    assert not [a for a in ctx.ledger.alerts() if a["record_type"] == "customer"]
    assert [p.connection for p in pause.paused_connections(ctx.ledger)] == ["main"]
    # failed outcomes are logged at WARNING
    paused_logs = [r for r in caplog.records if getattr(r, "outcome", "") == "paused"]
    assert paused_logs and all(r.levelno == logging.WARNING for r in paused_logs)

    # the Authorization ID is fixed: the next record syncs, the connection resumes by itself and
    # the records that waited are sent again
    spectrum_app.state.admin.authorize(AUTH, "AddCustomer", True)
    assert sync_customer(ctx, ids[2], "main").result == "synced"
    assert pause.paused_connections(ctx.ledger) == []
    assert sorted(enqueued) == sorted(
        [("sync.customer", (ids[0], "main")), ("sync.customer", (ids[1], "main"))]
    )
    # and they sync when those tasks run
    assert sync_customer(ctx, ids[0], "main").result == "synced"
    assert sync_customer(ctx, ids[1], "main").result == "synced"


def test_paused_connection_alerts_once_per_hour(ledger: Any) -> None:
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert pause.pause(ledger, "main", "A: not authorized", now=t0) is True
    assert pause.pause(ledger, "main", "A: not authorized", now=t0 + timedelta(minutes=1)) is False
    assert pause.pause(ledger, "main", "A: again", now=t0 + timedelta(minutes=59)) is False
    assert pause.pause(ledger, "main", "A: again", now=t0 + timedelta(minutes=61)) is True
    assert pause.pause(ledger, "other", "A: refused", now=t0 + timedelta(minutes=62)) is True
    assert len(connection_alerts(ledger)) == 3
    assert pause.paused_since(ledger, "main") == t0
    assert pause.resume(ledger, "main") is True
    assert pause.resume(ledger, "main") is False
    # pausing again soon after (a connection whose services are only partly authorized pauses
    # and resumes repeatedly) does not alert again within the hour
    assert pause.pause(ledger, "main", "A: again", now=t0 + timedelta(minutes=70)) is False
    assert pause.paused_since(ledger, "main") == t0 + timedelta(minutes=70)
    assert pause.pause(ledger, "main", "A: again", now=t0 + timedelta(hours=5)) is True
    assert len(connection_alerts(ledger)) == 4


def test_paused_connection_servicetrade_401_after_token_refetch(
    ctx: Any, world: Any, st_app: Any
) -> None:
    ctx.st = ServiceTradeClient(
        ctx.settings.servicetrade.base_url,
        client_id=credentials.ST_CLIENT_ID,
        client_secret="revoked-secret-0000",
        transport=asgi_transport(st_app),
        retry_wait_s=0,
    )
    cid = customers(world)[0]
    out = sync_customer(ctx, cid, "main")
    assert out.result == "paused", out
    rec = ctx.ledger.get(RecordKey("main", "customer", str(cid)))
    assert rec.status is Status.PENDING and "refused the credentials" in (rec.last_error or "")
    assert len(connection_alerts(ctx.ledger)) == 1


def test_paused_connection_shown_in_status_and_resumed_by_doctor(
    cli_env: Any,
    ctx: Any,
    world: Any,
    st_app: Any,
    spectrum_app: Any,
    published: list[Published],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        webhook,
        "transports",
        lambda: webhook.Transports(asgi_transport(st_app), asgi_transport(spectrum_app), 0),
    )
    cid = customers(world)[0]
    spectrum_app.state.admin.authorize(AUTH, "AddCustomer", False)
    assert sync_customer(ctx, cid, "main").result == "paused"
    status = runner.invoke(app, ["status"], catch_exceptions=False)
    assert status.exit_code == 0
    assert "connection main PAUSED since" in status.output
    assert "1 record(s) waiting" in status.output

    # doctor still fails: the connection stays paused
    url = "https://sync.example.com"
    runner.invoke(app, ["webhook", "register", "--url", url], catch_exceptions=False)
    failing = runner.invoke(app, ["doctor", "--url", url], catch_exceptions=False)
    assert failing.exit_code == 1 and "resumed" not in failing.output
    assert [p.connection for p in pause.paused_connections(ctx.ledger)] == ["main"]

    spectrum_app.state.admin.authorize(AUTH, "AddCustomer", True)
    passing = runner.invoke(app, ["doctor", "--url", url], catch_exceptions=False)
    assert passing.exit_code == 0, passing.output
    assert "resumed connection 'main': 1 task(s) re-enqueued" in passing.output
    assert ("sync.customer", (cid, "main")) in {(p.task, p.args) for p in published}
    assert pause.paused_connections(ctx.ledger) == []
    after = runner.invoke(app, ["status"], catch_exceptions=False)
    assert "PAUSED" not in after.output


def test_infolink_schema_error_fails_the_record_and_alerts_the_connection_once(
    ctx: Any, world: Any, spectrum_db: Any
) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(spectrum_db.url)
    with engine.begin() as conn:
        conn.exec_driver_sql('ALTER TABLE "CR_CUSTOMER_MASTER_MC" DROP COLUMN "Sales_Tax_Code"')
    engine.dispose()
    ids = customers(world)[:2]
    for cid in ids:
        out = sync_customer(ctx, cid, "main")
        assert out.result == "failed", out  # permanent: not "unreachable", not retried
        rec = ctx.ledger.get(RecordKey("main", "customer", str(cid)))
        assert rec.status is Status.FAILED and rec.error_kind == "InfoLinkSchemaError"
        assert "no such column" in (rec.last_error or "")
    alerts = connection_alerts(ctx.ledger)
    assert len(alerts) == 1 and alerts[0]["kind"] == "configuration"
    assert pause.paused_connections(ctx.ledger) == []  # a schema problem does not pause


def test_paused_connection_alert_mail_says_run_doctor_not_retry(ledger: Any) -> None:
    from worker.alerts import Alert, compose_alert

    pause.pause(ledger, "main", "Spectrum AddCustomer: A: The Web Service is not authorized")
    (row,) = connection_alerts(ledger)
    mail = compose_alert(Alert.from_row(row), sender="s@example.com", recipients=["p@example.com"])
    body = mail.get_content()
    assert "connection paused: credentials refused" in mail["Subject"]
    assert "stsync doctor" in body and "stsync retry" not in body
    assert "not authorized" in body
