"""Beat's liveness for a container healthcheck: a heartbeat file touched on every scheduler tick.

``stsync beat`` runs Celery Beat with :class:`HeartbeatScheduler` (Celery's persistent scheduler,
plus one ``touch`` per tick) and a loop interval of at most ``MAX_INTERVAL_S``; ``stsync beat
--healthcheck`` exits 0 while the heartbeat is younger than ``MAX_AGE_S`` and 1 otherwise (Beat
hung, crashed or never started). The file sits next to Beat's schedule file in the data
directory (``STSYNC_DATA_DIR``, ``/data`` in the image).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from celery.beat import PersistentScheduler

HEARTBEAT = "beat-heartbeat"
#: Beat wakes up at least this often (``beat --max-interval``), so the heartbeat is this fresh
MAX_INTERVAL_S = 30
#: older than this: unhealthy (three missed ticks and some slack)
MAX_AGE_S = 3 * MAX_INTERVAL_S + 30


def heartbeat_path(data_dir: Path) -> Path:
    return data_dir / HEARTBEAT


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def heartbeat_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since the last tick; None when Beat never ticked here."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return (time.time() if now is None else now) - mtime


def healthy(path: Path, max_age_s: float = MAX_AGE_S, now: float | None = None) -> bool:
    age = heartbeat_age(path, now)
    return age is not None and age <= max_age_s


class HeartbeatScheduler(PersistentScheduler):
    """Celery's persistent scheduler that touches ``beat-heartbeat`` beside its schedule file."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        schedule_file: str = getattr(self, "schedule_filename")  # noqa: B009 - untyped in stubs
        touch(heartbeat_path(Path(schedule_file).parent))
        return float(super().tick(*args, **kwargs))
