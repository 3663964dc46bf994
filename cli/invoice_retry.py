"""``stsync retry invoice N`` for an invoice ServiceTrade holds as ``failed`` (F14, F17).

The worker posts only ``pending_accounting`` (and credits ``void``) invoices, so reopening the
ledger row of an invoice that ServiceTrade still calls ``failed`` would leave it pending with
nothing to post it. Before the row is reopened this asks ServiceTrade: ``failed`` -> say that
stsync sets it back to pending accounting there, ask (``--yes`` skips), do it; ``pending`` or
``void`` -> queue as usual; any other status -> refuse with the exact instruction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from mappers.invoice import retry_instruction
from tasks import invoice as invoice_task
from worker.ledger import Record


class InvoiceRetry:
    """Decides, per invoice record, whether ``stsync retry`` may reopen and queue it."""

    def __init__(
        self, context: Callable[[], Any], *, yes: bool, out: Console, err: Console
    ) -> None:
        self.make_context = context
        self.yes = yes
        self.out = out
        self.err = err
        self._ctx: Any = None

    def _context(self) -> Any:
        if self._ctx is None:
            self._ctx = self.make_context()
        return self._ctx

    def ready(self, rec: Record) -> bool:
        """True when the record may be reopened and queued (after any ServiceTrade change)."""
        if rec.key.record_type != invoice_task.RECORD_TYPE:
            return True
        invoice_id = int(rec.key.source_id)
        plan = invoice_task.retry_plan(self._context(), invoice_id)
        if not plan.proceed:
            self.err.print(f"[red]not retried[/red] {rec.key}: {plan.message}", highlight=False)
            return False
        if plan.reapprove:
            self.out.print(plan.message, highlight=False)
            if not self.yes and not typer.confirm(
                f"Set invoice {invoice_id} to pending accounting in ServiceTrade?",
                default=False,
                err=True,
            ):
                self.err.print(
                    f"not retried {rec.key}: it stays failed; " + retry_instruction(invoice_id),
                    highlight=False,
                )
                return False
            invoice_task.reapprove_in_servicetrade(self._context(), invoice_id)
            self.out.print(f"invoice {invoice_id} is pending accounting in ServiceTrade again")
        return True

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
