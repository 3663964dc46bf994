"""The Beat schedule under a frozen wall clock (freezegun), as Beat itself would read the time.

Only pure schedule objects run under the frozen clock: never a live worker (kombu's timers read
``time.monotonic``, which freezegun patches too; see reference celery-reliability.md §5).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from freezegun import freeze_time

from beat_schedule import build_schedule
from mappers.timecard import catch_up_window
from tests.conftest import demo_env, fast_settings_toml
from worker.celery_app import celery_config
from worker.settings import Settings, load_settings

NY = ZoneInfo("America/New_York")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    env = demo_env(tmp_path, infolink_url="sqlite://", database_url="sqlite://")
    return load_settings(fast_settings_toml(tmp_path), env)


def catch_up_schedule(settings: Settings):
    app = Celery("freeze-test", set_as_current=False)
    conf = celery_config(settings, "redis://127.0.0.1:6379/15")
    app.conf.update(timezone=conf["timezone"], enable_utc=conf["enable_utc"])
    sched = build_schedule(settings)["timecard-catch-up-main"]["schedule"]
    sched.app = app
    return sched


@pytest.mark.parametrize(
    ("frozen_utc", "due"),
    [
        ("2026-11-30 07:00:30", True),  # Monday 02:00 in New York (EST, UTC-5)
        ("2026-11-30 06:59:00", False),  # one minute early
        ("2026-11-29 07:00:30", False),  # Sunday at the same time
        ("2026-11-30 02:00:30", False),  # 02:00 UTC is not 02:00 local
    ],
)
def test_catch_up_is_due_monday_two_local_and_not_otherwise(
    settings: Settings, frozen_utc: str, due: bool
) -> None:
    sched = catch_up_schedule(settings)
    last_run = datetime(2026, 11, 23, 2, 0, 1, tzinfo=NY)  # the previous Monday's run
    with freeze_time(frozen_utc):
        is_due, _next = sched.is_due(last_run)
    assert is_due is due


def test_catch_up_runs_once_then_waits_a_week(settings: Settings) -> None:
    sched = catch_up_schedule(settings)
    with freeze_time("2026-11-30 07:00:30"):
        just_ran = datetime.now(NY)
        is_due, next_s = sched.is_due(just_ran)
    assert not is_due
    assert timedelta(days=6, hours=23) < timedelta(seconds=next_s) <= timedelta(days=7)


def test_sweep_interval_under_a_frozen_clock(settings: Settings) -> None:
    entry = build_schedule(settings)["missed-change-sweep"]
    assert entry["schedule"] == float(settings.schedules.sweep_every_s)
    assert entry["options"]["expires"] <= entry["schedule"]


def test_catch_up_window_is_the_past_week_in_local_time() -> None:
    with freeze_time("2026-11-30 07:00:00"):
        since, until = catch_up_window(datetime.now(NY), "America/New_York")
    assert until - since >= timedelta(days=7)
    assert (
        since.astimezone(NY).hour == 0 and since.astimezone(NY).date().isoformat() == "2026-11-23"
    )
