"""Run both simulators: in-process (ASGI apps for tests) or as real HTTP servers on loopback.

``start_sandbox`` is what the demo, the end-to-end tests and ``stsync sandbox up`` call: it seeds a
world, keeps Spectrum's Info-Link tables in a SQLite *file* (``<data_dir>/spectrum.sqlite``, which
stsync reads like production Info-Link) and serves each simulator from a ``uvicorn.Server`` in a
thread of this process. Signal handling stays with the caller: uvicorn installs no handlers outside
the main thread, and ``RunningSandbox.stop`` ends both servers through ``should_exit``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI

from sandbox.credentials import demo_environment
from sandbox.faults import FaultConfig, FaultInjector
from sandbox.seed import SeedSpec, SeedWorld, build_world
from sandbox.servicetrade.app import create_app as create_st_app
from sandbox.servicetrade.state import STState
from sandbox.spectrum.app import create_app as create_spectrum_app
from sandbox.spectrum.db import SpectrumDB

log = logging.getLogger(__name__)

SPECTRUM_DB_FILE = "spectrum.sqlite"
DEFAULT_DATA_DIR = Path(".stsync/sandbox")
DEFAULT_ST_PORT = 8801
DEFAULT_SPECTRUM_PORT = 8802
#: how long a server may take to start or to stop before we call it a failure
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


@dataclass
class _Server:
    """One uvicorn server running in a daemon thread on a socket we bound ourselves."""

    name: str
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            # open keep-alive connections hold a graceful shutdown; cut them
            self.server.force_exit = True
            self.thread.join(timeout)
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.thread.is_alive():
            log.warning("sandbox %s server did not stop within %.0f s", self.name, 2 * timeout)


def _bind(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only when it does, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"sandbox cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _serve(name: str, app: FastAPI, sock: socket.socket) -> _Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox-{name}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise RuntimeError(f"sandbox {name} server exited during start-up (see its log)")
        if time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"sandbox {name} server did not start within {START_TIMEOUT_S} s")
        time.sleep(0.01)
    return _Server(name, server, thread, sock)


@dataclass
class RunningSandbox:
    """Both simulators serving on loopback, and handles on their state and fault knobs."""

    st_url: str
    spectrum_url: str
    infolink_url: str
    st_state: STState
    spectrum_db: SpectrumDB
    st_injector: FaultInjector
    spectrum_injector: FaultInjector
    st_app: FastAPI
    spectrum_app: FastAPI
    data_dir: Path
    #: the seeded world (None with ``spec=None``: Spectrum kept as found, ServiceTrade empty)
    world: SeedWorld | None = None
    _servers: list[_Server] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def environment(self) -> dict[str, str]:
        """Environment variables that point stsync at this sandbox (credentials included)."""
        return demo_environment(self.st_url, self.spectrum_url, self.infolink_url)

    def stop(self) -> None:
        """Stop both servers and release the database. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        for server in self._servers:
            server.stop()
        self.spectrum_db.dispose()

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _fresh_sqlite_file(path: Path) -> None:
    """Remove a previous run's database (and its WAL files) so the seed starts clean."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()


def _injector(latency_ms: float) -> FaultInjector:
    return FaultInjector(FaultConfig(latency_ms=latency_ms))


def start_sandbox(
    data_dir: Path,
    *,
    st_port: int = 0,
    spectrum_port: int = 0,
    spec: SeedSpec | None = SeedSpec(),  # noqa: B008 - frozen dataclass, a safe default
    host: str = "127.0.0.1",
    latency_ms: float = 0.0,
) -> RunningSandbox:
    """Seed and start both simulators as HTTP servers in threads; port 0 picks a free port.

    With a ``spec`` the Spectrum file is recreated and both sides are seeded with
    ``build_world(spec)``; ``/_sandbox/reset`` restores that seed. With ``spec=None`` the Spectrum
    file is kept as found (a previous run's writes included) and ServiceTrade starts empty.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    db_path = (data_dir / SPECTRUM_DB_FILE).resolve()
    infolink_url = f"sqlite:///{db_path}"

    st_sock = _bind(host, st_port)
    try:
        sp_sock = _bind(host, spectrum_port)
    except OSError:
        st_sock.close()
        raise
    st_url, spectrum_url = _url(host, st_sock), _url(host, sp_sock)
    servers: list[_Server] = []
    db: SpectrumDB | None = None
    try:
        world = build_world(dataclasses.replace(spec, st_base_url=st_url)) if spec else None
        if world is not None:
            _fresh_sqlite_file(db_path)
        db = SpectrumDB(infolink_url)
        state = STState(base_url=st_url)
        if world is not None:
            db.load(world.spectrum, baseline=True)
            state.load(world.servicetrade)
        st_injector, sp_injector = _injector(latency_ms), _injector(latency_ms)
        st_app = create_st_app(state, st_injector, base_url=st_url)
        sp_app = create_spectrum_app(db, sp_injector)
        servers.append(_serve("servicetrade", st_app, st_sock))
        servers.append(_serve("spectrum", sp_app, sp_sock))
    except BaseException:
        for server in servers:
            server.stop()
        for sock in (st_sock, sp_sock):
            with contextlib.suppress(OSError):
                sock.close()
        if db is not None:
            db.dispose()
        raise
    log.info(
        "sandbox up: ServiceTrade %s, Spectrum %s, Info-Link %s", st_url, spectrum_url, infolink_url
    )
    return RunningSandbox(
        st_url=st_url,
        spectrum_url=spectrum_url,
        infolink_url=infolink_url,
        st_state=state,
        spectrum_db=db,
        st_injector=st_injector,
        spectrum_injector=sp_injector,
        st_app=st_app,
        spectrum_app=sp_app,
        data_dir=data_dir,
        world=world,
        _servers=servers,
    )


@dataclass
class InProcessSandbox:
    """Both simulators as ASGI apps (no sockets) with their state, for ``httpx.ASGITransport``."""

    st_app: FastAPI
    spectrum_app: FastAPI
    world: SeedWorld
    st_state: STState
    spectrum_db: SpectrumDB
    st_injector: FaultInjector
    spectrum_injector: FaultInjector


def in_process_sandbox(
    spec: SeedSpec = SeedSpec(),  # noqa: B008 - frozen dataclass, a safe default
    *,
    db_url: str = "sqlite://",
    st_base_url: str | None = None,
    **spectrum_options: Any,
) -> InProcessSandbox:
    """Seeded simulators in this process: ServiceTrade in memory, Spectrum in ``db_url``.

    ``spectrum_options`` go to the Spectrum ``create_app`` (``strict_lengths``,
    ``require_all_elements``).
    """
    if st_base_url is not None:
        spec = dataclasses.replace(spec, st_base_url=st_base_url)
    world = build_world(spec)
    db = SpectrumDB(db_url)
    db.load(world.spectrum, baseline=True)
    state = STState(base_url=spec.st_base_url)
    state.load(world.servicetrade)
    st_injector, sp_injector = FaultInjector(), FaultInjector()
    st_app = create_st_app(state, st_injector, base_url=spec.st_base_url)
    sp_app = create_spectrum_app(db, sp_injector, **spectrum_options)
    return InProcessSandbox(st_app, sp_app, world, state, db, st_injector, sp_injector)


def in_process(spec: SeedSpec = SeedSpec()) -> tuple[FastAPI, FastAPI, SeedWorld]:  # noqa: B008
    """``(servicetrade_app, spectrum_app, world)``, seeded, Spectrum in memory."""
    sb = in_process_sandbox(spec)
    return sb.st_app, sb.spectrum_app, sb.world


__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_SPECTRUM_PORT",
    "DEFAULT_ST_PORT",
    "InProcessSandbox",
    "RunningSandbox",
    "in_process",
    "in_process_sandbox",
    "start_sandbox",
]
