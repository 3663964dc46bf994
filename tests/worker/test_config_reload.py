"""A worker process reloads an edited configuration file without a restart (issue 15, F21).

``reload_if_changed`` runs at every task start (``task_prerun``); these tests call it with a
simulated monotonic clock, on the process context built from a real file."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import demo_env, fast_settings_toml
from worker import context as wctx
from worker.settings import CONFIG_ENV, get_settings

EVERY = 5
MAPPED = 'by_service_line = { SP = "100", FA = "200", EX = "300" }'


@pytest.fixture
def config(
    tmp_path: Path, spectrum_db: Any, ledger: Any, ledger_path_url: str, monkeypatch: Any
) -> Iterator[Path]:
    """This process as a worker: settings from a file on disk, its process context open."""
    env = demo_env(tmp_path, infolink_url=spectrum_db.url, database_url=ledger_path_url)
    env["BROKER_URL"] = os.environ.get("STSYNC_TEST_REDIS", "redis://127.0.0.1:6379/13")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    path = fast_settings_toml(tmp_path, extra=f"config_reload_every_s = {EVERY}\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    get_settings.cache_clear()
    wctx.close_process_context()
    wctx.open_process_context()
    yield path
    wctx.close_process_context()
    get_settings.cache_clear()


def mapping(ctx: Any) -> dict[str, str]:
    return dict(ctx.settings.connections["main"].rules.cost_centers.by_service_line)


def test_config_reload_a_valid_edit_rebuilds_the_process_context(config: Path) -> None:
    t0 = time.monotonic()
    before = wctx.get_context()
    assert wctx.reload_if_changed(now=t0 + 2 * EVERY) is False  # unchanged: nothing rebuilt
    config.write_text(config.read_text().replace(MAPPED, MAPPED.replace("}", ', KS = "100" }')))
    assert wctx.reload_if_changed(now=t0 + 2 * EVERY + 1) is False  # not looked at yet
    assert wctx.get_context() is before
    assert wctx.reload_if_changed(now=t0 + 4 * EVERY) is True
    after = wctx.get_context()
    assert after is not before
    assert mapping(after)["KS"] == "100" and "KS" not in mapping(before)
    assert get_settings().connections["main"].rules.cost_centers.by_service_line["KS"] == "100"
    # the same version seen again is not reloaded again
    config.write_text(config.read_text())
    assert wctx.reload_if_changed(now=t0 + 6 * EVERY) is False
    assert wctx.get_context() is after


def test_config_reload_an_invalid_edit_keeps_the_settings_and_alerts_once_per_version(
    config: Path, ledger: Any, caplog: pytest.LogCaptureFixture
) -> None:
    t0 = time.monotonic()
    before = wctx.get_context()
    good = config.read_text()
    config.write_text(good + "worker_concurrency = 0\n")
    with caplog.at_level(logging.ERROR, logger="stsync.context"):
        assert wctx.reload_if_changed(now=t0 + 2 * EVERY) is False
    assert wctx.get_context() is before
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert str(config) in line and "worker_concurrency" in line
    config.write_text(good + "worker_concurrency = 0\n")  # touched, same bad version
    assert wctx.reload_if_changed(now=t0 + 4 * EVERY) is False
    alerts = [a for a in ledger.alerts() if a["kind"] == "configuration"]
    assert len(alerts) == 1 and str(config) in alerts[0]["message"]
    config.write_text(good + "start_cap = 0\n")  # another bad version: its own alert
    assert wctx.reload_if_changed(now=t0 + 6 * EVERY) is False
    assert len([a for a in ledger.alerts() if a["kind"] == "configuration"]) == 2
    config.write_text(good.replace(MAPPED, MAPPED.replace("}", ', KS = "100" }')))
    assert wctx.reload_if_changed(now=t0 + 8 * EVERY) is True
    assert mapping(wctx.get_context())["KS"] == "100"


def test_config_reload_off_when_the_interval_is_zero(config: Path) -> None:
    t0 = time.monotonic()
    config.write_text(
        config.read_text().replace(f"config_reload_every_s = {EVERY}", "config_reload_every_s = 0")
    )
    assert wctx.reload_if_changed(now=t0 + 2 * EVERY) is True  # this edit is still seen ...
    config.write_text(config.read_text().replace(MAPPED, MAPPED.replace("}", ', KS = "100" }')))
    assert wctx.reload_if_changed(now=t0 + 100 * EVERY) is False  # ... and then none
    assert "KS" not in mapping(wctx.get_context())
