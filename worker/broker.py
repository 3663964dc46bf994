"""Which Redis the broker is: ``BROKER_URL``, or the embedded Redis of the data directory.

Its own module so the sync context (which opens a Redis client on the broker for the write slots)
and the Celery app both use it without importing each other.
"""

from __future__ import annotations

from pathlib import Path

from clients.errors import ConfigError
from worker.settings import Settings


def resolve_broker_url(settings: Settings, *, start: bool = False) -> str:
    """``BROKER_URL``, or the embedded Redis of the data directory (started when ``start``)."""
    if settings.broker_url:
        return settings.broker_url
    from worker import embedded_redis

    data_dir = Path(settings.data_dir)
    if start:
        return embedded_redis.ensure_running(data_dir)
    url = embedded_redis.running_url(data_dir)
    if url is None:
        raise ConfigError(
            "no broker: set BROKER_URL (redis://...) or start the embedded one with "
            "`stsync broker start` (the demo does this)",
            field="BROKER_URL",
        )
    return url
