"""``stsync status``: what waits (pending, retry_later, the webhook inbox) and the recovery invariant
(no row waiting with nothing queued or scheduled); exit 3 when it is broken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from typer.testing import CliRunner

from cli.main import app
from worker.ledger import RecordKey, sync_record

runner = CliRunner()


def test_status_retry_later_rows_and_an_intact_invariant(cli_env: Any, ctx: Any) -> None:
    key = RecordKey("main", "invoice", "5001")
    ctx.ledger.ensure(key)
    due = datetime.now(UTC) + timedelta(minutes=5)
    ctx.ledger.mark_retry_later(key, next_attempt_at=due, reason="Spectrum down")
    ctx.ledger.inbox_put([("main", "sync.job", "77")], due_after_s=600)
    result = runner.invoke(app, ["status"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "retry_later" in result.output and due.strftime("%Y-%m-%d %H:%M") in result.output
    assert "webhook inbox" in result.output
    assert "invariant: OK" in result.output


def test_status_lists_rows_breaking_the_invariant_and_exits_3(cli_env: Any, ctx: Any) -> None:
    stuck = RecordKey("main", "customer", "5002")
    ctx.ledger.ensure(stuck)
    late = datetime.now(UTC) - timedelta(days=1)
    with ctx.ledger.tx() as conn:
        conn.execute(update(sync_record).values(next_attempt_at=late))
    nodue = RecordKey("main", "job", "5003")
    ctx.ledger.ensure(nodue)
    with ctx.ledger.tx() as conn:
        conn.execute(
            update(sync_record)
            .where(sync_record.c.source_id == "5003")
            .values(next_attempt_at=None)
        )
    result = runner.invoke(app, ["status"], catch_exceptions=False)
    assert result.exit_code == 3, result.output
    assert "main/customer/5002" in result.output and "overdue" in result.output
    assert "main/job/5003" in result.output and "no due time" in result.output
    assert "invariant broken: 2 row(s)" in result.output
