"""The shared ServiceTrade pause (worker/pacing.py): how long one process trusts Redis's "no
pause", and that a pause is never hidden longer than that."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from clients.errors import RateLimited
from worker.pacing import RECHECK_S, AccountPause

KEY = "t:stsync:servicetrade-pause"


class CountingRedis(fakeredis.FakeRedis):
    gets = 0

    def get(self, name: Any) -> Any:
        type(self).gets += 1
        return super().get(name)


@pytest.fixture
def r() -> CountingRedis:
    CountingRedis.gets = 0
    return CountingRedis()


def _pause(r: Any, clock: list[float], slept: list[float] | None = None) -> AccountPause:
    sink = slept if slept is not None else []
    return AccountPause(r, KEY, clock=lambda: clock[0], sleep=sink.append)


def test_a_no_pause_answer_is_trusted_for_recheck_s_then_asked_again(r: CountingRedis) -> None:
    clock = [1_000.0]
    mine = _pause(r, clock)
    mine.wait()
    clock[0] += RECHECK_S / 2
    mine.wait()
    mine.wait()
    assert CountingRedis.gets == 1
    clock[0] += RECHECK_S
    mine.wait()
    assert CountingRedis.gets == 2


def test_another_process_pause_is_seen_within_recheck_s(r: CountingRedis) -> None:
    clock = [1_000.0]
    mine, other = _pause(r, clock), _pause(r, clock)
    assert mine.remaining() == 0  # "no pause", trusted for a while
    other.pause(30)
    assert mine.remaining() == 0  # not yet asked again: at most RECHECK_S late
    clock[0] += RECHECK_S
    assert mine.remaining() == pytest.approx(30 - RECHECK_S)
    with pytest.raises(RateLimited):
        mine.wait()


def test_a_process_own_pause_holds_its_next_call_at_once(r: CountingRedis) -> None:
    clock = [1_000.0]
    slept: list[float] = []
    mine = _pause(r, clock, slept)
    mine.wait()
    mine.pause(2)
    mine.wait()
    assert slept == [pytest.approx(2)]


def test_a_pause_read_from_redis_is_not_cached_as_clear(r: CountingRedis) -> None:
    clock = [1_000.0]
    mine, other = _pause(r, clock), _pause(r, clock)
    other.pause(5)
    assert mine.remaining() == pytest.approx(5)
    clock[0] += 1
    assert mine.remaining() == pytest.approx(4)
    clock[0] += 4
    assert mine.remaining() == 0
    assert CountingRedis.gets == 3


def test_a_clock_that_went_back_asks_redis_again(r: CountingRedis) -> None:
    clock = [1_000.0]
    mine = _pause(r, clock)
    mine.remaining()
    clock[0] -= 60
    mine.remaining()
    assert CountingRedis.gets == 2
