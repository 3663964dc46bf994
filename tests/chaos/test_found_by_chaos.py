"""Bugs the chaos soak found (bench/chaos.py), pinned with the plain sync functions.

Both are about ServiceTrade answering 503 for a moment (the soak's 5 % fault rate): a write-back
that must reach a person was lost for good instead of being retried.
"""

from __future__ import annotations

from typing import Any

import pytest

from clients.errors import TransientError
from tasks.invoice import sync_invoice
from worker.ledger import RecordKey, Status

INVOICE_ENTITY = 6


def comments_on(st_state: Any, invoice_id: int) -> list[str]:
    return [
        str(c["content"])
        for c in st_state.all("comment")
        if c.get("entityType") == INVOICE_ENTITY and c.get("entityId") == invoice_id
    ]


def test_failed_invoice_is_still_marked_failed_when_servicetrade_was_down_while_telling_it(
    ctx: Any, world: Any, st_state: Any, st_app: Any
) -> None:
    """The failure comment (or the ``failed`` status) hit a 503: the record stays open and the
    task's retry tells ServiceTrade, instead of the invoice waiting in ``pending_accounting`` with
    nobody told."""
    inv_id = world.landmarks["invoice_salesperson_without_id"]
    key = RecordKey("main", "invoice", str(inv_id))
    st_app.state.injector.script("comment", ["error"])
    with pytest.raises(TransientError):
        sync_invoice(ctx, inv_id, "main")
    rec = ctx.ledger.get(key)
    assert rec.status is Status.PENDING and "will retry" in (rec.last_error or "")
    assert st_state.get("invoice", inv_id)["status"] == "pending_accounting"

    out = sync_invoice(ctx, inv_id, "main")  # the task's retry
    assert out.result == "failed"
    assert ctx.ledger.get(key).status is Status.FAILED
    assert st_state.get("invoice", inv_id)["status"] == "failed"
    assert len(comments_on(st_state, inv_id)) == 1
    assert len(ctx.ledger.alerts(key)) == 1


def test_void_comment_lost_to_a_503_is_posted_by_the_retry(
    ctx: Any, world: Any, st_state: Any, st_app: Any, spectrum_db: Any
) -> None:
    """The credit memo landed, then the comment hit a 503: the retry found the void already
    credited and returned without the comment. Now it comments once, and credits nothing again."""
    inv_id = world.landmarks["invoice_nc"]
    assert sync_invoice(ctx, inv_id, "main").result == "synced"
    st_state.update("invoice", inv_id, {"status": "void"})
    st_app.state.injector.script("comment", ["error"])
    with pytest.raises(TransientError):
        sync_invoice(ctx, inv_id, "main")
    assert spectrum_db.count("CR_INVOICE_HEADER_MC", Invoice_Or_Transaction=f"SV{inv_id}") == 1
    assert not [c for c in comments_on(st_state, inv_id) if f"SV{inv_id}" in c]

    out = sync_invoice(ctx, inv_id, "main")  # the task's retry
    assert out.ok and out.spectrum_key == f"SV{inv_id}"
    assert len([c for c in comments_on(st_state, inv_id) if f"SV{inv_id}" in c]) == 1
    assert spectrum_db.count("CR_INVOICE_HEADER_MC", Invoice_Or_Transaction=f"SV{inv_id}") == 1
    # a later delivery changes nothing
    sync_invoice(ctx, inv_id, "main")
    assert len([c for c in comments_on(st_state, inv_id) if f"SV{inv_id}" in c]) == 1


def test_soft_time_limit_is_a_retry_not_a_broken_record(
    ctx: Any, world: Any, spectrum_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the full soak with the Spectrum write throttle: workers waiting for a write slot
    (the slots of a SIGKILLed worker stay taken until their lease ends) hit the soft time limit;
    the record was marked ``failed`` as an internal error, and the invoices on a failed job failed
    as 'prerequisite'. Every step is resumable, so it is retried like a transient error."""
    from celery.exceptions import SoftTimeLimitExceeded

    from tasks.customer import sync_customer

    company = next(c for c in world.servicetrade["company"] if c.get("isCustomer"))
    client = ctx.spectrum_for("main")
    real_put = client.put
    calls = {"n": 0}

    def put(request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise SoftTimeLimitExceeded()
        return real_put(request)

    monkeypatch.setattr(client, "put", put)
    key = RecordKey("main", "customer", str(company["id"]))
    with pytest.raises(TransientError, match="soft time limit"):
        sync_customer(ctx, company["id"], "main")
    rec = ctx.ledger.get(key)
    assert rec.status is Status.PENDING and rec.error_kind == "transient"
    out = sync_customer(ctx, company["id"], "main")  # the task's retry
    assert out.result == "synced"
    assert spectrum_db.count("CR_CUSTOMER_MASTER_MC", Customer_Code=out.spectrum_key) == 1
