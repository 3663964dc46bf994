"""Alert e-mails (F14) against a real SMTP server (aiosmtpd) started by each test."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox import credentials
from tasks.ops import ALERTS_TASK_NAME
from tasks.timecard import sync_timecard
from tests.conftest import demo_env, fast_settings_toml
from tests.ops.smtp import SmtpServer, free_port, self_signed_cert
from worker import alerts as alerts_mod
from worker.alerts import DIGEST_WATERMARK, SmtpSession, deliver_alerts
from worker.celery_app import Queue, app
from worker.ledger import Ledger, RecordKey
from worker.settings import AlertSettings, Settings, load_settings

SUPPORT = "integration-support@example.com"  # sandbox/demo.toml support_emails
T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)


def settings_with(tmp_path: Path, alerts: str, **env: str) -> Settings:
    extra = "\n[alerts]\n" + alerts + "\n"
    return load_settings(
        fast_settings_toml(tmp_path, extra=extra),
        demo_env(
            tmp_path,
            infolink_url=f"sqlite:///{tmp_path / 'il.sqlite'}",
            database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}",
            extra=env,
        ),
    )


@pytest.fixture
def led(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    ledger.migrate()
    yield ledger
    ledger.dispose()


@pytest.fixture(autouse=True)
def _forget_warnings() -> Iterator[None]:
    alerts_mod._warned.clear()
    yield
    alerts_mod._warned.clear()


def alert(led: Ledger, record_type: str, source_id: str, kind: str, message: str) -> bool:
    from tasks._pipeline import problem_key

    return led.record_alert(
        RecordKey("main", record_type, source_id),
        kind=kind,
        problem_key=problem_key(message),
        message=message,
    )


def unsent(led: Ledger) -> list[int]:
    return [a["id"] for a in led.unsent_alerts()]


# --- per-problem mode ----------------------------------------------------------------------------
def test_each_problem_is_mailed_once_to_the_support_contacts(tmp_path: Path, led: Ledger) -> None:
    port = free_port()
    settings = settings_with(
        tmp_path, f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nsender = "stsync@acme.example"'
    )
    assert alert(
        led,
        "invoice",
        "801",
        "prerequisite",
        "invoice 801: salesperson Dana (user 7) has no Spectrum code",
    )
    assert alert(led, "customer", "55", "retries_exhausted", "gave up after 6 retries: 503")
    # the same problem of the same record again: nothing new to tell
    assert not alert(
        led,
        "invoice",
        "801",
        "prerequisite",
        "invoice 801: salesperson Dana (user 7) has no Spectrum code",
    )
    with SmtpServer(port) as inbox:
        run = deliver_alerts(led, settings, now=T0)
        again = deliver_alerts(led, settings, now=T0 + timedelta(minutes=1))
    assert (run.mails, run.alerts_sent, run.errors) == (2, 2, [])
    assert again.mails == 0
    assert len(inbox.received) == 2
    for got in inbox.received:
        assert got.rcpt_tos == [SUPPORT]
        assert got.mail_from == "stsync@acme.example"
        assert got.message["To"] == SUPPORT
    first, second = inbox.received
    assert "invoice 801" in str(first.message["Subject"])
    assert "[stsync main]" in str(first.message["Subject"])
    body = str(first.message.get_content())
    assert "salesperson Dana (user 7) has no Spectrum code" in body
    assert "stsync retry invoice 801 --connection main" in body
    assert "stsync history invoice 801 --connection main" in body
    assert "customer 55" in str(second.message["Subject"])
    assert unsent(led) == []
    assert all(a["sent_at"] is not None for a in led.alerts())


def test_a_prerequisite_failure_of_a_real_sync_is_mailed(
    ctx: Any, st_state: Any, tmp_path: Path
) -> None:
    card = next(
        c for c in st_state.all("timecard") if not c["user"].get("externalIds", {}).get("spectrum")
    )
    assert sync_timecard(ctx, card["id"], "main").result == "failed"
    port = free_port()
    settings = ctx.settings.model_copy(
        update={"alerts": AlertSettings(smtp_host="127.0.0.1", smtp_port=port)}
    )
    with SmtpServer(port) as inbox:
        run = deliver_alerts(ctx.ledger, settings)
    assert run.mails == 1
    [got] = inbox.received
    assert f"timecard {card['id']}" in str(got.message["Subject"])
    body = str(got.message.get_content())
    assert "is not in Spectrum" in body and "prerequisite" in body
    assert f"stsync retry timecard {card['id']} --connection main" in body


def test_overlapping_runs_never_mail_an_alert_twice(tmp_path: Path, led: Ledger) -> None:
    port = free_port()
    settings = settings_with(tmp_path, f'smtp_host = "127.0.0.1"\nsmtp_port = {port}')
    alert(led, "job", "9", "prerequisite", "job 9: customer missing")
    nested: list[Any] = []

    class Session(SmtpSession):
        def send(self, msg: Any, recipients: Any) -> None:
            if not nested:  # a second run starts while the first one is sending
                nested.append(deliver_alerts(led, settings, now=T0))
            super().send(msg, recipients)

    with SmtpServer(port) as inbox:
        deliver_alerts(led, settings, now=T0, connect=Session)
    assert nested[0].mails == 0
    assert len(inbox.received) == 1


# --- digest mode --------------------------------------------------------------------------------
def test_digest_mode_sends_at_most_one_mail_per_interval(tmp_path: Path, led: Ledger) -> None:
    port = free_port()
    settings = settings_with(
        tmp_path, f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\ndigest_minutes = 15'
    )
    for n in range(3):
        alert(led, "customer", str(100 + n), "prerequisite", f"company {100 + n} has no address")
    with SmtpServer(port) as inbox:
        first = deliver_alerts(led, settings, now=T0)
        # a storm: the same problems again (nothing new) and one new problem, a minute later
        for n in range(3):
            assert not alert(
                led, "customer", str(100 + n), "prerequisite", f"company {100 + n} has no address"
            )
        alert(led, "site", "7", "retries_exhausted", "gave up after 6 retries")
        held = deliver_alerts(led, settings, now=T0 + timedelta(minutes=1))
        later = deliver_alerts(led, settings, now=T0 + timedelta(minutes=16))
        quiet = deliver_alerts(led, settings, now=T0 + timedelta(minutes=40))
    assert (first.mails, first.alerts_sent) == (1, 3)
    assert (held.mails, held.deferred) == (0, 1)
    assert (later.mails, later.alerts_sent) == (1, 1)
    assert quiet.mails == 0
    assert len(inbox.received) == 2
    digest, second = inbox.bodies()
    assert "3 new problems" in inbox.subjects()[0]
    for n in range(3):
        assert f"customer {100 + n}" in digest
        assert f"stsync retry customer {100 + n} --connection main" in digest
    assert "site 7" in second and "customer 100" not in second
    mark = led.get_watermark("main", DIGEST_WATERMARK)
    assert mark is not None and datetime.fromisoformat(mark) == T0 + timedelta(minutes=16)


# --- outages and configuration ------------------------------------------------------------------
def test_smtp_down_keeps_alerts_unsent_and_sends_them_later(
    tmp_path: Path, led: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens here yet
    settings = settings_with(tmp_path, f'smtp_host = "127.0.0.1"\nsmtp_port = {port}')
    alert(led, "invoice", "12", "prerequisite", "invoice 12: job missing")
    alert(led, "invoice", "13", "prerequisite", "invoice 13: job missing")
    with caplog.at_level(logging.WARNING, logger="stsync.alerts"):
        down = deliver_alerts(led, settings, now=T0)
    assert down.mails == 0 and down.errors and "ConnectionRefusedError" in down.errors[0]
    assert len(unsent(led)) == 2
    assert "will retry" in caplog.text
    with SmtpServer(port) as inbox:
        up = deliver_alerts(led, settings, now=T0 + timedelta(minutes=1))
    assert up.mails == 2 and len(inbox.received) == 2
    assert unsent(led) == []


def test_a_refused_message_releases_its_alert(tmp_path: Path, led: Ledger) -> None:
    port = free_port()
    settings = settings_with(tmp_path, f'smtp_host = "127.0.0.1"\nsmtp_port = {port}')
    alert(led, "job", "1", "prerequisite", "job 1: site missing")
    alert(led, "job", "2", "prerequisite", "job 2: site missing")
    calls: list[int] = []

    class Flaky(SmtpSession):
        def send(self, msg: Any, recipients: Any) -> None:
            calls.append(1)
            if len(calls) == 2:
                raise smtplib.SMTPDataError(451, b"try again later")
            super().send(msg, recipients)

    with SmtpServer(port) as inbox:
        run = deliver_alerts(led, settings, now=T0, connect=Flaky)
        assert run.mails == 1 and len(inbox.received) == 1 and len(unsent(led)) == 1
        retry = deliver_alerts(led, settings, now=T0 + timedelta(minutes=1))
    assert retry.mails == 1 and len(inbox.received) == 2
    assert {"job 1" in b for b in inbox.bodies()} == {True, False}
    assert unsent(led) == []


def test_starttls_and_login(tmp_path: Path, led: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed_cert(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test's own CA, as production would
    port = free_port()
    on = settings_with(
        tmp_path,
        f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nstarttls = true\nusername = "stsync"',
        SMTP_PASSWORD="smtp-pass-0001",
    )
    off = on.model_copy(update={"alerts": on.alerts.model_copy(update={"starttls": False})})
    alert(led, "invoice", "5", "prerequisite", "invoice 5: customer missing")
    with SmtpServer(port, tls=(cert, key), credentials=("stsync", "smtp-pass-0001")) as inbox:
        refused = deliver_alerts(led, off, now=T0)  # the server insists on STARTTLS first
        assert refused.mails == 0 and refused.errors and len(unsent(led)) == 1
        run = deliver_alerts(led, on, now=T0 + timedelta(minutes=1))
    assert run.mails == 1, run.errors
    [got] = inbox.received
    assert got.tls
    assert inbox.logins == [("stsync", "smtp-pass-0001")]
    assert unsent(led) == []


def test_plain_smtp_without_starttls(tmp_path: Path, led: Ledger) -> None:
    port = free_port()
    settings = settings_with(tmp_path, f'smtp_host = "127.0.0.1"\nsmtp_port = {port}')
    alert(led, "invoice", "6", "prerequisite", "invoice 6: customer missing")
    with SmtpServer(port) as inbox:
        assert deliver_alerts(led, settings, now=T0).mails == 1
    assert not inbox.received[0].tls


def test_without_smtp_host_alerts_stay_in_the_ledger_and_one_warning_is_logged(
    tmp_path: Path, led: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_with(tmp_path, 'smtp_host = ""')
    alert(led, "job", "3", "prerequisite", "job 3: customer missing")
    with caplog.at_level(logging.WARNING, logger="stsync.alerts"):
        runs = [deliver_alerts(led, settings, now=T0 + timedelta(minutes=i)) for i in range(3)]
    assert [r.unmailed for r in runs] == [1, 1, 1]
    assert len(unsent(led)) == 1
    warnings = [r for r in caplog.records if "smtp_host is not configured" in r.getMessage()]
    assert len(warnings) == 1


def test_a_connection_without_support_emails_keeps_its_alerts(tmp_path: Path, led: Ledger) -> None:
    port = free_port()
    settings = settings_with(tmp_path, f'smtp_host = "127.0.0.1"\nsmtp_port = {port}')
    main = settings.connections["main"].model_copy(update={"support_emails": []})
    settings = settings.model_copy(update={"connections": {"main": main}})
    alert(led, "job", "4", "prerequisite", "job 4: customer missing")
    with SmtpServer(port) as inbox:
        run = deliver_alerts(led, settings, now=T0)
    assert run.unmailed == 1 and inbox.received == []
    assert len(unsent(led)) == 1


def test_mails_never_contain_secrets(tmp_path: Path, led: Ledger) -> None:
    port = free_port()
    settings = settings_with(
        tmp_path,
        f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\ndigest_minutes = 5\nusername = "u"',
        SMTP_PASSWORD="smtp-secret-77",
    )
    secrets = [
        credentials.WEBHOOK_SECRET,
        settings.connections["main"].authorization_id.get_secret_value(),
        settings.servicetrade.client_secret.get_secret_value(),  # type: ignore[union-attr]
    ]
    # an upstream error that echoed credentials ends up in an alert's message
    alert(
        led,
        "customer",
        "1",
        "retries_exhausted",
        f"gave up: 401 from https://st/webhooks/servicetrade/{secrets[0]} auth={secrets[1]} "
        f"client_secret={secrets[2]} Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abcdefgh",
    )
    each = settings.model_copy(
        update={
            "alerts": settings.alerts.model_copy(update={"digest_minutes": 0, "username": None})
        }
    )
    with SmtpServer(port) as inbox:
        assert deliver_alerts(led, each, now=T0).mails == 1
        alert(led, "customer", "2", "retries_exhausted", f"echo {secrets[1]}")
        assert (
            deliver_alerts(
                led,
                each.model_copy(
                    update={"alerts": each.alerts.model_copy(update={"digest_minutes": 5})}
                ),
                now=T0,
            ).mails
            == 1
        )
    raw = "\n".join(r.message.as_string() for r in inbox.received)
    assert "[REDACTED]" in raw
    for s in [*secrets, "eyJhbGciOiJIUzI1NiJ9.abcdefgh"]:
        assert s not in raw


def test_the_mailer_is_a_schedule_task() -> None:
    import beat_schedule

    task = app.tasks[ALERTS_TASK_NAME]
    assert task.queue == Queue.SCHEDULE.value  # type: ignore[attr-defined]  # a task option
    assert beat_schedule.ALERTS_TASK == ALERTS_TASK_NAME
