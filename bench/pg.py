"""A private PostgreSQL server for the soak's ledger, restartable without touching anybody's.

The shared server on 127.0.0.1:5432 serves every test run on this machine, so the soak's
"PostgreSQL restarted" crash runs its own cluster: ``initdb`` into a fresh directory owned by the
``postgres`` account (the server refuses to run as root), ``pg_ctl start`` on a free loopback
port with trust authentication for ``root``, and ``restart`` = an *immediate* stop (no
checkpoint, every connection cut, as a crash) followed by a start (crash recovery from the WAL).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from worker.serve import free_port

#: the account that owns the cluster (PostgreSQL refuses to run as root)
ACCOUNT = "postgres"


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: the private PostgreSQL needs the server binaries")
    return str(Path(found).resolve())


class PrivatePostgres:
    """``url`` is a SQLAlchemy URL for the ``postgres`` database, as user ``root``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="stsync-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.restarts = 0
        self._started = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://root@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str, timeout: float = 120.0) -> None:
        prefix = [] if os.geteuid() != 0 else ["runuser", "-u", ACCOUNT, "--"]
        res = subprocess.run(
            [*prefix, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.directory,
        )
        if res.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({res.returncode}): "
                f"{res.stderr[-2000:] or res.stdout[-2000:]}"
            )

    def start(self) -> None:
        if not self.data.exists():
            if os.geteuid() == 0:
                account = pwd.getpwnam(ACCOUNT)
                os.chmod(self.directory, 0o755)
                os.chown(self.directory, account.pw_uid, account.pw_gid)
            self._run(
                _bin("initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "root",
                "--no-sync",
                "-E",
                "UTF8",
            )
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "120",
            "-o",
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200",
            "start",
        )
        self._started = True

    def stop(self, mode: str = "fast") -> None:
        if self._started:
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
            self._started = False

    def restart(self, down_s: float = 1.0) -> None:
        """Crash and come back: every connection is cut, open transactions are lost."""
        self.stop("immediate")
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
