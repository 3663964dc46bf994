"""How many ledger statements a posted invoice costs (P2: every millisecond of CPU per task shows
in the end-to-end wall time). Fails when the count grows back."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from tasks.invoice import sync_invoice
from tasks.job import sync_job

#: per approved invoice whose customer, site and job are synced (audit rows not counted: one
#: per external call, the clients' business): the claim (1), the job's and the customer's rows
#: (2), the landed documents (1), the plan saved before the write (1), the document's done row
#: and the invoice's state (2), done (1), the connection's pause watermark (1)
STATEMENTS_PER_POSTED_INVOICE = 9


def test_a_posted_invoice_costs_at_most_its_ledger_statements(
    ctx: Any, world: Any, st_state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    job = st_state.get("invoice", inv_id)["job"]
    assert sync_job(ctx, job["id"], "main").ok  # the chain first, as the worker's bench does
    statements: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    ledger = ctx.ledger
    driver_run = ledger._driver_run

    def counted(sql: str, params: Any, work: Any) -> Any:
        statements.append(sql)
        return driver_run(sql, params, work)

    monkeypatch.setattr(ledger, "_driver_run", counted)
    event.listen(ledger.engine, "before_cursor_execute", on_execute)
    try:
        out = sync_invoice(ctx, inv_id, "main")
    finally:
        event.remove(ledger.engine, "before_cursor_execute", on_execute)
    assert out.result == "synced"
    ledger_statements = [s for s in statements if "audit_event" not in s]
    assert len(ledger_statements) <= STATEMENTS_PER_POSTED_INVOICE, "\n".join(ledger_statements)
