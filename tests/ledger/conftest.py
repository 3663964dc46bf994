"""The ledger under test, on SQLite and PostgreSQL (``ledger_url`` is parametrized over both)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker.ledger import Ledger


@pytest.fixture
def led(ledger_url: str) -> Iterator[Ledger]:
    led = Ledger(ledger_url)
    led.migrate()
    yield led
    led.dispose()
