"""The Beat schedule (F15): the weekly timecard catch-up fires once a week at the configured local
time, DST weeks included, and the missed-change sweep every interval.

No live worker and no frozen clock: the schedules are asked directly with an injected ``now``
(``crontab(...).is_due`` / ``remaining_estimate``), on a Celery app configured the way
``worker.celery_app.configure`` configures it (``celery_config``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab, maybe_schedule, schedule

from beat_schedule import CATCH_UP_TASK, SWEEP_TASK, build_schedule
from tests.conftest import demo_env, fast_settings_toml
from worker.celery_app import celery_config
from worker.settings import ScheduleSettings, Settings, load_settings

UTC = ZoneInfo("UTC")


@pytest.fixture
def base_settings(tmp_path: Path) -> Settings:
    env = demo_env(
        tmp_path,
        infolink_url=f"sqlite:///{tmp_path / 'il.sqlite'}",
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}",
    )
    return load_settings(fast_settings_toml(tmp_path), env)


def configured(settings: Settings, *, tz: str | None = None, **schedules: Any) -> Settings:
    update: dict[str, Any] = {
        "schedules": settings.schedules.model_copy(update=schedules),
    }
    if tz is not None:
        update["timezone"] = tz
    return settings.model_copy(update=update)


def celery_app(settings: Settings) -> Celery:
    """An app with the time settings the worker and Beat get (no broker connection is made)."""
    app = Celery("beat-test", set_as_current=False)
    conf = celery_config(settings, "redis://127.0.0.1:6379/15")
    app.conf.update(timezone=conf["timezone"], enable_utc=conf["enable_utc"])
    return app


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def entry(settings: Settings, name: str, clock: Clock) -> Any:
    """A schedule entry's schedule, bound to the configured app and the test clock."""
    built = maybe_schedule(build_schedule(settings)[name]["schedule"], app=celery_app(settings))
    assert isinstance(built, crontab | schedule)
    sched: Any = built  # celery-types does not declare ``nowfun``, the injectable clock
    sched.nowfun = clock
    return sched


def fire_times(
    sched: Any, clock: Clock, start: datetime, days: int, step: timedelta = timedelta(minutes=1)
) -> list[datetime]:
    """Walk the clock like Beat does and note every time the entry is due."""
    last = start
    fired: list[datetime] = []
    t = start
    while t < start + timedelta(days=days):
        clock.now = t
        due, _ = sched.is_due(last)
        if due:
            fired.append(t)
            last = t
        t += step
    return fired


def local(times: list[datetime], tz: str) -> list[str]:
    return [t.astimezone(ZoneInfo(tz)).strftime("%a %Y-%m-%d %H:%M %Z") for t in times]


# --- entries ------------------------------------------------------------------------------------
def test_entries_name_the_tasks_and_the_connection(base_settings: Settings) -> None:
    schedule = build_schedule(base_settings)

    catch_up = schedule["timecard-catch-up-main"]
    assert catch_up["task"] == CATCH_UP_TASK == "schedule.timecard_catch_up"
    assert catch_up["args"] == ("main",)
    assert isinstance(catch_up["schedule"], crontab)
    sweep = schedule["missed-change-sweep"]
    assert sweep["task"] == SWEEP_TASK == "schedule.sweep"
    assert sweep["schedule"] == float(base_settings.schedules.sweep_every_s)
    assert sweep["options"]["expires"] <= base_settings.schedules.sweep_every_s


def test_the_tasks_the_entries_name_are_registered() -> None:
    import tasks.sweep
    import tasks.timecard

    assert tasks.timecard.timecard_catch_up.name == CATCH_UP_TASK
    assert tasks.sweep.missed_change_sweep.name == SWEEP_TASK


# --- the weekly catch-up ------------------------------------------------------------------------
def test_catch_up_fires_once_a_week_on_monday_at_two_local(base_settings: Settings) -> None:
    clock = Clock(datetime(2026, 11, 4, 12, 0, tzinfo=UTC))
    sched = entry(base_settings, "timecard-catch-up-main", clock)

    fired = fire_times(sched, clock, clock.now, days=21)

    assert local(fired, "America/New_York") == [
        "Mon 2026-11-09 02:00 EST",
        "Mon 2026-11-16 02:00 EST",
        "Mon 2026-11-23 02:00 EST",
    ]


def test_catch_up_keeps_local_time_across_the_autumn_dst_change(base_settings: Settings) -> None:
    clock = Clock(datetime(2026, 10, 20, tzinfo=UTC))
    sched = entry(base_settings, "timecard-catch-up-main", clock)

    fired = fire_times(sched, clock, clock.now, days=21)

    assert local(fired, "America/New_York") == [
        "Mon 2026-10-26 02:00 EDT",
        "Mon 2026-11-02 02:00 EST",
        "Mon 2026-11-09 02:00 EST",
    ]
    # the week holding the change is an hour longer in real time
    assert fired[1] - fired[0] == timedelta(days=7, hours=1)


def test_catch_up_at_a_time_the_spring_change_skips_still_runs_that_week(
    base_settings: Settings,
) -> None:
    settings = configured(base_settings, catch_up_day="sun", catch_up_hour=2, catch_up_minute=30)
    clock = Clock(datetime(2026, 3, 1, tzinfo=UTC))
    sched = entry(settings, "timecard-catch-up-main", clock)

    fired = fire_times(sched, clock, clock.now, days=15)

    # 02:30 does not exist on 2026-03-08 in New York: it runs once, an hour later by the clock
    assert local(fired, "America/New_York") == [
        "Sun 2026-03-01 02:30 EST",
        "Sun 2026-03-08 03:30 EDT",
        "Sun 2026-03-15 02:30 EDT",
    ]


def test_catch_up_in_a_repeated_hour_runs_once(base_settings: Settings) -> None:
    settings = configured(base_settings, catch_up_day="sun", catch_up_hour=1, catch_up_minute=30)
    clock = Clock(datetime(2026, 10, 25, tzinfo=UTC))
    sched = entry(settings, "timecard-catch-up-main", clock)

    fired = fire_times(sched, clock, clock.now, days=15)

    assert local(fired, "America/New_York") == [
        "Sun 2026-10-25 01:30 EDT",
        "Sun 2026-11-01 01:30 EDT",
        "Sun 2026-11-08 01:30 EST",
    ]


def test_catch_up_follows_the_configured_zone_day_and_time(base_settings: Settings) -> None:
    settings = configured(
        base_settings,
        tz="America/Los_Angeles",
        catch_up_day="fri",
        catch_up_hour=18,
        catch_up_minute=45,
    )
    clock = Clock(datetime(2026, 11, 1, tzinfo=UTC))
    sched = entry(settings, "timecard-catch-up-main", clock)

    fired = fire_times(sched, clock, clock.now, days=14)

    assert local(fired, "America/Los_Angeles") == [
        "Fri 2026-11-06 18:45 PST",
        "Fri 2026-11-13 18:45 PST",
    ]
    assert [t.astimezone(UTC).hour for t in fired] == [2, 2]  # Saturday 02:45 UTC


def test_remaining_estimate_counts_real_time_across_dst(base_settings: Settings) -> None:
    ny = ZoneInfo("America/New_York")
    clock = Clock(datetime(2026, 10, 31, 12, 0, tzinfo=ny))
    sched = entry(base_settings, "timecard-catch-up-main", clock)

    remaining = sched.remaining_estimate(datetime(2026, 10, 26, 2, 0, tzinfo=ny))

    # Saturday noon EDT -> Monday 02:00 EST: 38 hours on the wall clock, 39 in real time
    assert remaining == timedelta(hours=39)


def test_default_schedule_is_monday_two_oclock(base_settings: Settings) -> None:
    defaults = ScheduleSettings()
    assert (defaults.catch_up_day, defaults.catch_up_hour, defaults.catch_up_minute) == (
        "mon",
        2,
        0,
    )
    assert defaults.sweep_every_s == 600


# --- the sweep ----------------------------------------------------------------------------------
@pytest.mark.parametrize("every", [600, 45])
def test_sweep_runs_every_interval(base_settings: Settings, every: int) -> None:
    settings = configured(base_settings, sweep_every_s=every)
    clock = Clock(datetime(2026, 11, 1, 5, 0, tzinfo=UTC))
    sched = entry(settings, "missed-change-sweep", clock)

    fired = fire_times(sched, clock, clock.now, days=1, step=timedelta(seconds=5))

    gaps = {b - a for a, b in zip(fired, fired[1:], strict=False)}
    assert gaps == {timedelta(seconds=every)}
    assert len(fired) == 86_400 // every - 1  # the first run comes one interval after start


def test_sweep_interval_is_not_bent_by_dst(base_settings: Settings) -> None:
    clock = Clock(datetime(2026, 11, 1, 4, 0, tzinfo=UTC))  # midnight EDT, the DST night
    sched = entry(base_settings, "missed-change-sweep", clock)

    fired = fire_times(sched, clock, clock.now, days=1)

    assert {b - a for a, b in zip(fired, fired[1:], strict=False)} == {timedelta(minutes=10)}
