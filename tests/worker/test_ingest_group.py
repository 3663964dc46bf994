"""Group commit of the ingest (ingest/group.py): concurrent deliveries share one flush, and
each is answered only with its own result, after the flush that took it returned."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ingest.group import GroupCommit


class Flusher:
    """A flush that records its groups and holds the first one until released."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned: list[int] = []

    def __call__(self, items: list[int]) -> list[object]:
        self.groups.append(list(items))
        self.entered.set()
        assert self.release.wait(10)
        self.returned.extend(items)
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def _wait_entered(f: Flusher) -> None:
    while not f.entered.is_set():
        await asyncio.sleep(0.001)


def test_deliveries_arriving_during_a_flush_share_the_next_one() -> None:
    f = Flusher()
    group: GroupCommit[int, object] = GroupCommit(f)

    async def main() -> list[object]:
        first = asyncio.ensure_future(group.submit(1))
        await _wait_entered(f)  # the first flush holds item 1
        rest = [asyncio.ensure_future(group.submit(i)) for i in (2, 3, -4)]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in [first, *rest])  # nobody answered before a flush ends
        f.release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    assert f.groups == [[1], [2, 3, -4]]
    assert results[:3] == [10, 20, 30]
    assert isinstance(results[3], ValueError) and str(results[3]) == "bad -4"
    assert (group.groups, group.items) == (2, 4)


def test_a_flush_that_raises_fails_every_delivery_of_its_group_only() -> None:
    calls: list[list[int]] = []

    def flush(items: list[int]) -> list[int]:
        calls.append(items)
        if 2 in items:
            raise ConnectionError("ledger down")
        return items

    group: GroupCommit[int, int] = GroupCommit(flush, max_group=2)

    async def main() -> list[object]:
        return await asyncio.gather(
            *(group.submit(i) for i in (1, 2, 3, 4)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert calls == [[1, 2], [3, 4]]  # all four waiting: at most max_group per flush
    assert all(isinstance(r, ConnectionError) for r in results[:2])
    assert results[2:] == [3, 4]


def test_max_group_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_group"):
        GroupCommit(lambda items: items, max_group=0)


def test_large_deliveries_are_flushed_without_company() -> None:
    """Weights are events: a group stops before it would pass max_weight, and a delivery as
    large as max_weight is flushed alone (sharing would only make the others wait)."""
    calls: list[list[int]] = []

    def flush(items: list[int]) -> list[int]:
        calls.append(items)
        return items

    group: GroupCommit[int, int] = GroupCommit(flush, max_weight=100)
    sizes = {1: 1, 2: 1, 3: 150, 4: 60, 5: 60, 6: 1}

    async def main() -> list[int]:
        return await asyncio.gather(*(group.submit(i, weight=w) for i, w in sizes.items()))

    assert asyncio.run(main()) == [1, 2, 3, 4, 5, 6]
    assert calls == [[1, 2], [3], [4], [5, 6]]
