"""Fixtures for the operations tests: the CLI's environment, a captured view of what Celery
publishes (on the real Redis, under a private key prefix), and a context the CLI may close."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.signals import before_task_publish

from tests.conftest import demo_env

REDIS_URL = os.environ.get("STSYNC_TEST_OPS_REDIS", "redis://127.0.0.1:6379/12")


@dataclasses.dataclass
class Published:
    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    headers: dict[str, Any]
    raw: str


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    yield prefix
    r = redis.Redis.from_url(REDIS_URL)
    for k in r.scan_iter(match=f"{prefix}*"):
        r.delete(k)
    r.close()


@pytest.fixture
def published() -> Iterator[list[Published]]:
    """Every task message published in this test, as Celery hands it to kombu."""
    out: list[Published] = []

    def grab(sender: Any = None, body: Any = None, headers: Any = None, **_: Any) -> None:
        args, kwargs, _embed = body
        out.append(
            Published(
                str(sender), tuple(args), dict(kwargs), dict(headers or {}), repr((body, headers))
            )
        )

    before_task_publish.connect(grab, weak=False)
    yield out
    before_task_publish.disconnect(grab)


@pytest.fixture
def cli_env(
    settings: Any,
    ledger: Any,
    spectrum_db: Any,
    ledger_path_url: str,
    tmp_path: Any,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The environment the CLI reads: the same config and ledger as ``settings``/``ctx``."""
    env = demo_env(
        tmp_path,
        infolink_url=spectrum_db.url,
        database_url=ledger_path_url,
        extra={
            "BROKER_URL": REDIS_URL,
            "STSYNC_REDIS_PREFIX": redis_prefix,
            "STSYNC_CONFIG": str(settings.config_path),
        },
    )
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # wide consoles: the runner is not a terminal, and rich would wrap table cells at 80 columns
    from rich.console import Console

    monkeypatch.setattr("cli.main.console", Console(width=400, color_system=None))
    monkeypatch.setattr("cli.main.err", Console(width=400, color_system=None, stderr=True))
    return env


@pytest.fixture
def cli_ctx(ctx: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``ctx`` for commands that run here (``--now``): the CLI closes its context when done,
    so it gets a copy whose ``close`` leaves the fixture's clients open."""
    copy = dataclasses.replace(ctx)
    copy.close = lambda: None
    monkeypatch.setattr("cli.main._context", lambda settings: copy)
    return copy
