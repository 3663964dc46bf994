"""Group commit for the ingest (P1): concurrent deliveries share one flush.

A delivery is answered 2xx only after its inbox rows are committed to the ledger and its tasks
are in Redis. Doing that per delivery costs a ledger transaction (a WAL commit) and two Redis
round trips each, plus a thread hop; under load those, not the parsing, bound the ingest. So
the handler hands its delivery to ``GroupCommit.submit`` and waits: when no flush is running,
the delivery is flushed at once (alone: no added latency when the ingest is idle); deliveries
that arrive while a flush runs wait for it to end and are then flushed together, by ONE call of
``flush`` in a worker thread (one ledger transaction, one Redis pipeline for all of them). Each
waiter gets its own delivery's result (or exception) only after that flush returned, so the
durable-acknowledgement guarantee is the same as flushing one by one.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: ``flush(items)`` returns one result per item, in order; an exception instance as a result
#: fails that item only; an exception raised fails every item of the group
Flush = Callable[[list[T]], Sequence[R | BaseException]]


@dataclass
class _LoopState(Generic[T, R]):
    #: (item, its weight, its waiter)
    pending: list[tuple[T, int, asyncio.Future[R]]] = field(default_factory=list)
    draining: asyncio.Task[None] | None = None


class GroupCommit(Generic[T, R]):
    """Flush items submitted concurrently together: at most ``max_group`` items per flush, and
    no more items once their weights (events) reach ``max_weight``. Large deliveries gain
    nothing from sharing a flush (their costs are per event) but would make each other wait,
    so a delivery of ``max_weight`` events or more is flushed alone."""

    def __init__(self, flush: Flush[T, R], *, max_group: int = 64, max_weight: int = 200) -> None:
        if max_group < 1 or max_weight < 1:
            raise ValueError("max_group and max_weight must be at least 1")
        self._flush = flush
        self.max_group = max_group
        self.max_weight = max_weight
        # one queue per event loop (a test client runs each request on a loop of its own)
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState[T, R]] = (
            weakref.WeakKeyDictionary()
        )
        #: the last loop's state, found without the weak dictionary's per-call weak reference
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], _LoopState[T, R]] | None = None
        #: sizes of the groups flushed so far (observability for the benchmark and tests)
        self.groups = 0
        self.items = 0

    async def submit(self, item: T, weight: int = 1) -> R:
        """``item``'s result once the flush that took it has returned."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop:
            state = last[1]
        else:
            found = self._states.get(loop)
            if found is None:
                found = self._states[loop] = _LoopState()
            state = found
            self._last = (weakref.ref(loop), state)
        future: asyncio.Future[R] = loop.create_future()
        state.pending.append((item, weight, future))
        if state.draining is None:
            state.draining = loop.create_task(self._drain(loop, state))
        return await future

    def _take(
        self, pending: list[tuple[T, int, asyncio.Future[R]]]
    ) -> list[tuple[T, int, asyncio.Future[R]]]:
        """The next group, in arrival order, removed from ``pending``."""
        n, weight = 0, 0
        while n < len(pending) and n < self.max_group and weight < self.max_weight:
            weight += pending[n][1]
            n += 1
        if n > 1 and weight > self.max_weight:
            n -= 1  # the last one would take the group over the bound: it starts the next
        group = pending[:n]
        del pending[:n]
        return group

    async def _drain(self, loop: asyncio.AbstractEventLoop, state: _LoopState[T, R]) -> None:
        group: list[tuple[T, int, asyncio.Future[R]]] = []
        try:
            while state.pending:
                group = self._take(state.pending)
                items = [item for item, _, _ in group]
                try:
                    results: Sequence[R | BaseException] = await loop.run_in_executor(
                        None, self._flush, items
                    )
                    if len(results) != len(items):
                        raise RuntimeError(
                            f"flush returned {len(results)} results for {len(items)} items"
                        )
                except Exception as exc:  # noqa: BLE001 - every waiter of the group sees it
                    results = [exc] * len(items)
                self.groups += 1
                self.items += len(items)
                for (_, _, future), result in zip(group, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                group = []
        finally:
            state.draining = None
            # cancelled (shutdown) with waiters left: they must not hang, nor be acknowledged
            for _, _, future in [*group, *state.pending]:
                if not future.done():
                    future.set_exception(RuntimeError("ingest shutting down"))
            state.pending.clear()
