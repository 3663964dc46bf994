"""``stsync retry invoice N`` for an invoice ServiceTrade holds as ``failed`` (issue 13: the retry
dead end). Through typer's runner, the in-process sandbox and the real Redis."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import delete, insert
from typer.testing import CliRunner

from cli.main import app
from clients.spectrum import infolink_schema as il
from tasks.invoice import RECORD_TYPE, sync_invoice
from tests.ops.conftest import Published
from worker.ledger import RecordKey, Status

runner = CliRunner()


def run(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def failed_invoice(ctx: Any, world: Any, st_state: Any, spectrum_db: Any) -> int:
    """An invoice refused by Spectrum (someone else's document under its number): failed in
    ServiceTrade and in the ledger; then accounting removes the squatter (the cause is fixed)."""
    inv_id = int(world.landmarks["invoice_nc"])
    with spectrum_db.transaction() as conn:
        conn.execute(
            insert(il.ar_invoices).values(
                Company_Code="ABC",
                Invoice_Or_Transaction=f"ST{inv_id}",
                Customer_Code="OTHER",
                Transaction_Type="I",
                Invoice_Amount=Decimal("1.00"),
                Sales_Tax_Amount=Decimal(0),
            )
        )
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    assert st_state.get("invoice", inv_id)["status"] == "failed"
    with spectrum_db.transaction() as conn:
        conn.execute(delete(il.ar_invoices).where(il.ar_invoices.c.Customer_Code == "OTHER"))
    return inv_id


def key(inv_id: int) -> RecordKey:
    return RecordKey("main", RECORD_TYPE, str(inv_id))


def test_retry_dead_end_failed_invoice_is_reapproved_after_asking_and_synced(
    cli_env: Any,
    cli_ctx: Any,
    world: Any,
    st_state: Any,
    spectrum_db: Any,
    published: list[Published],
) -> None:
    inv_id = failed_invoice(cli_ctx, world, st_state, spectrum_db)

    res = run("retry", "invoice", str(inv_id), input="y\n")

    assert res.exit_code == 0, res.output
    assert "sets it back to pending accounting" in res.output
    assert st_state.get("invoice", inv_id)["status"] == "pending_accounting"
    assert [(p.task, p.args) for p in published] == [("sync.invoice", (inv_id, "main"))]
    # the worker picks it up
    assert sync_invoice(cli_ctx, inv_id, "main").result == "synced"
    assert st_state.get("invoice", inv_id)["status"] == "processed"
    assert cli_ctx.ledger.get(key(inv_id)).status is Status.DONE


def test_retry_dead_end_declined_keeps_it_failed_with_the_instruction(
    cli_env: Any,
    cli_ctx: Any,
    world: Any,
    st_state: Any,
    spectrum_db: Any,
    published: list[Published],
) -> None:
    inv_id = failed_invoice(cli_ctx, world, st_state, spectrum_db)

    res = run("retry", "invoice", str(inv_id), input="n\n")

    assert res.exit_code == 1
    assert "set the invoice back to pending accounting" in res.output
    assert f"stsync retry invoice {inv_id}" in res.output
    assert published == []
    assert st_state.get("invoice", inv_id)["status"] == "failed"
    assert cli_ctx.ledger.get(key(inv_id)).status is Status.FAILED
    assert f"main/invoice/{inv_id}" in run("failures").output


def test_retry_dead_end_yes_skips_the_question(
    cli_env: Any,
    cli_ctx: Any,
    world: Any,
    st_state: Any,
    spectrum_db: Any,
    published: list[Published],
) -> None:
    inv_id = failed_invoice(cli_ctx, world, st_state, spectrum_db)
    res = run("retry", "invoice", str(inv_id), "--yes")
    assert res.exit_code == 0, res.output
    assert st_state.get("invoice", inv_id)["status"] == "pending_accounting"
    assert len(published) == 1


def test_retry_dead_end_refuses_an_invoice_that_is_not_approved(
    cli_env: Any,
    cli_ctx: Any,
    world: Any,
    st_state: Any,
    spectrum_db: Any,
    published: list[Published],
) -> None:
    inv_id = failed_invoice(cli_ctx, world, st_state, spectrum_db)
    st_state.update("invoice", inv_id, {"status": "ok"})  # the office took it back

    res = run("retry", "invoice", str(inv_id), "--yes")

    assert res.exit_code == 1
    assert "'ok' in ServiceTrade" in res.output
    assert "set it to pending accounting in ServiceTrade" in res.output
    assert published == []
    assert cli_ctx.ledger.get(key(inv_id)).status is Status.FAILED


def test_retry_dead_end_reopened_row_never_stays_pending(
    cli_env: Any, cli_ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    """A failed row reopened behind ServiceTrade's back (an older CLI, a script) while the
    invoice is still failed there: the worker puts it back on the failures list."""
    inv_id = failed_invoice(cli_ctx, world, st_state, spectrum_db)
    cli_ctx.ledger.reopen(key(inv_id))
    assert cli_ctx.ledger.get(key(inv_id)).status is Status.PENDING

    out = sync_invoice(cli_ctx, inv_id, "main")

    assert out.result == "failed"
    rec = cli_ctx.ledger.get(key(inv_id))
    assert rec.status is Status.FAILED
    assert "set the invoice back to pending accounting" in (rec.last_error or "")
    assert f"stsync retry invoice {inv_id}" in (rec.last_error or "")
    assert f"main/invoice/{inv_id}" in run("failures").output


def test_retry_dead_end_of_a_failed_void_retries_the_void(
    cli_env: Any,
    cli_ctx: Any,
    world: Any,
    st_state: Any,
    spectrum_db: Any,
    published: list[Published],
) -> None:
    """The failure comment of a void says `stsync retry invoice N`: that replays the void (the
    approval itself is done), without touching the invoice's status in ServiceTrade."""
    inv_id = int(world.landmarks["invoice_nc"])
    assert sync_invoice(cli_ctx, inv_id, "main").ok
    with spectrum_db.transaction() as conn:
        conn.execute(
            insert(il.ar_invoices).values(
                Company_Code="ABC",
                Invoice_Or_Transaction=f"SV{inv_id}",
                Customer_Code="OTHER",
                Transaction_Type="C",
                Invoice_Amount=Decimal("1.00"),
                Sales_Tax_Amount=Decimal(0),
            )
        )
    st_state.update("invoice", inv_id, {"status": "void"})
    assert sync_invoice(cli_ctx, inv_id, "main").result == "failed"
    comment = [c for c in st_state.all("comment") if c.get("entityId") == inv_id][-1]
    assert f"stsync retry invoice {inv_id}" in comment["content"]
    with spectrum_db.transaction() as conn:
        conn.execute(delete(il.ar_invoices).where(il.ar_invoices.c.Customer_Code == "OTHER"))

    res = run("retry", "invoice", str(inv_id))

    assert res.exit_code == 0, res.output
    assert [(p.task, p.args) for p in published] == [("sync.invoice", (inv_id, "main"))]
    void_key = RecordKey("main", "invoice_void", str(inv_id))
    assert cli_ctx.ledger.get(void_key).status is Status.PENDING
    assert st_state.get("invoice", inv_id)["status"] == "void"
    assert sync_invoice(cli_ctx, inv_id, "main").result == "synced"
    assert cli_ctx.ledger.get(void_key).status is Status.DONE


def test_retry_dead_end_failed_then_voided_invoice_is_settled_not_pending(
    cli_env: Any,
    cli_ctx: Any,
    world: Any,
    st_state: Any,
    spectrum_db: Any,
    published: list[Published],
) -> None:
    """Failed, then the office voided it, then `retry --all-failed`: the approval row must end
    final (skipped: nothing to approve any more), not pending with nothing queued for it."""
    inv_id = failed_invoice(cli_ctx, world, st_state, spectrum_db)
    st_state.update("invoice", inv_id, {"status": "void"})
    res = run("retry", "--all-failed", "--yes")
    assert res.exit_code == 0, res.output
    assert ("sync.invoice", (inv_id, "main")) in [(p.task, p.args) for p in published]
    sync_invoice(cli_ctx, inv_id, "main")  # the worker runs the queued task
    rec = cli_ctx.ledger.get(key(inv_id))
    assert rec.status is Status.SKIPPED
    assert "voided in ServiceTrade before it was posted" in (rec.last_error or "")
