"""Spectrum write slots: never more than max_in_flight writes per connection at once (reliability)."""

from __future__ import annotations

import threading
import time
from typing import Any

import fakeredis
import pytest

from clients.errors import TransientError
from worker.throttle import WriteSlots


@pytest.fixture
def r() -> Any:
    return fakeredis.FakeRedis()


def test_never_more_than_the_limit_across_threads(r: Any) -> None:
    slots = WriteSlots(r, "t:w", 2, wait_s=10, poll_s=0.005)
    inside = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        for _ in range(5):
            with slots.slot():
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.01)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2
    assert slots.in_use() == 0


def test_busy_slots_raise_transient_after_waiting(r: Any) -> None:
    slots = WriteSlots(r, "t:w", 1, wait_s=0.1, poll_s=0.01)
    with slots.slot(), pytest.raises(TransientError, match="slots busy"), slots.slot():
        pass
    with slots.slot():  # released after the block
        assert slots.in_use() == 1


def test_a_dead_holders_lease_expires(r: Any) -> None:
    slots = WriteSlots(r, "t:w", 1, lease_s=0.05, wait_s=1, poll_s=0.01)
    assert slots._try("dead-holder")  # never released: its process died
    started = time.monotonic()
    with slots.slot():
        assert time.monotonic() - started >= 0.04


def test_connections_do_not_share_slots(r: Any) -> None:
    a = WriteSlots(r, "t:a", 1, wait_s=0.05)
    b = WriteSlots(r, "t:b", 1, wait_s=0.05)
    with a.slot(), b.slot():
        assert a.in_use() == 1 and b.in_use() == 1


def test_redis_down_is_transient() -> None:
    import redis

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.1)
    with pytest.raises(TransientError, match="cannot reach Redis"), WriteSlots(dead, "t", 1).slot():
        pass


def test_context_writes_hold_a_slot(ctx: Any, world: Any, r: Any) -> None:
    """Spectrum puts made through the context's client go through the connection's slots."""
    from tasks.customer import sync_customer
    from worker.context import ThrottledSpectrumClient

    client = ctx.spectrum_for("main")
    assert isinstance(client, ThrottledSpectrumClient)
    seen: list[int] = []

    class Spy(WriteSlots):
        def _try(self, token: str) -> bool:
            ok = super()._try(token)
            seen.append(self.in_use())
            return ok

    client.slots = Spy(r, "t:main", 1)
    company = next(c for c in world.servicetrade["company"] if not c.get("isVendor"))
    assert sync_customer(ctx, company["id"], "main").ok
    assert seen == [1]  # one AddCustomer, inside one slot
    assert client.slots.in_use() == 0


def test_a_slot_of_a_process_that_died_on_this_host_is_freed_at_once(r: Any) -> None:
    import multiprocessing as mp
    import os
    import socket

    proc = mp.get_context("spawn").Process(target=os.getpid)
    proc.start()
    proc.join()
    slots = WriteSlots(r, "t:w", 1, lease_s=3600, wait_s=0.2, poll_s=0.01)
    assert slots._try(f"{socket.gethostname()}:{proc.pid}:deadbeef")  # its holder was SIGKILLed
    with slots.slot():  # no wait for the hour-long lease
        assert slots.in_use() == 1


def test_a_slot_of_a_live_process_is_kept(r: Any) -> None:
    import os
    import socket

    slots = WriteSlots(r, "t:w", 1, lease_s=3600, wait_s=0.1, poll_s=0.01)
    assert slots._try(f"{socket.gethostname()}:{os.getpid()}:cafe")
    with pytest.raises(TransientError, match="slots busy"), slots.slot():
        pass
