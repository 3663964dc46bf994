"""Shared fixtures: the in-process sandbox, a real migrated ledger, a SyncContext around them.

No sockets for these: both simulators are mounted as ASGI apps behind httpx transports. The
Spectrum sandbox keeps its state in a SQLite file that the InfoLinkReader reads, as production
reads Info-Link. Ledger tests that must run on PostgreSQL too use the ``ledger_url`` fixture.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from sandbox import credentials

os.environ.setdefault("STSYNC_AUTOCONFIGURE", "0")

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "sandbox" / "demo.toml"
PG_URL = os.environ.get("STSYNC_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")


def asgi_transport(app: Any) -> httpx.BaseTransport:
    """A sync httpx transport that calls an ASGI app in-process (via Starlette's test client)."""
    from fastapi.testclient import TestClient

    client = TestClient(app, raise_server_exceptions=False)
    return client._transport  # noqa: SLF001 - the public TestClient wraps exactly this transport


def demo_env(
    tmp: Path,
    *,
    infolink_url: str,
    database_url: str,
    st_url: str = "http://st.sandbox",
    spectrum_url: str = "http://spectrum.sandbox",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    env = credentials.demo_environment(st_url, spectrum_url, infolink_url)
    env.update({"DATABASE_URL": database_url, "STSYNC_DATA_DIR": str(tmp / "data")})
    env.update(extra or {})
    return env


def fast_settings_toml(tmp: Path, *, extra: str = "") -> Path:
    """The demo config with short reliability limits (fast retries, short leases) for tests."""
    text_ = DEMO_CONFIG.read_text()
    text_ += (
        "\n[reliability]\nretry_backoff_s = 1\nretry_backoff_max_s = 2\nmax_retries = 6\n"
        "lease_s = 20\ntask_time_limit_s = 60\ntask_soft_time_limit_s = 50\n"
        "visibility_timeout_s = 70\nunacked_restore_interval_s = 1\nstart_cap = 3\n"
    )
    text_ += extra
    path = tmp / "stsync.toml"
    path.write_text(text_)
    return path


@pytest.fixture
def world() -> Any:
    from sandbox.seed import SeedSpec, build_world

    return build_world(SeedSpec(companies=3))


@pytest.fixture
def st_state(world: Any) -> Any:
    from sandbox.servicetrade.state import STState

    state = STState()
    state.load(world.servicetrade)
    return state


@pytest.fixture
def spectrum_db(world: Any, tmp_path: Path) -> Any:
    from sandbox.spectrum.db import SpectrumDB

    db = SpectrumDB(f"sqlite:///{tmp_path / 'spectrum.sqlite'}")
    db.load(world.spectrum)
    return db


@pytest.fixture
def st_app(st_state: Any) -> Any:
    from sandbox.faults import FaultInjector
    from sandbox.servicetrade.app import create_app

    return create_app(st_state, FaultInjector(), deliver=lambda url, body: 200)


@pytest.fixture
def spectrum_app(spectrum_db: Any) -> Any:
    from sandbox.faults import FaultInjector
    from sandbox.spectrum.app import create_app

    return create_app(spectrum_db, FaultInjector())


@pytest.fixture
def ledger_path_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def settings(tmp_path: Path, spectrum_db: Any, ledger_path_url: str) -> Any:
    from worker.settings import load_settings

    env = demo_env(tmp_path, infolink_url=spectrum_db.url, database_url=ledger_path_url)
    return load_settings(fast_settings_toml(tmp_path), env)


@pytest.fixture
def ledger(settings: Any) -> Iterator[Any]:
    from worker.ledger import Ledger

    led = Ledger(settings.database_url)
    led.migrate()
    yield led
    led.dispose()


@pytest.fixture
def enqueued() -> list[tuple[str, tuple[Any, ...]]]:
    return []


@pytest.fixture
def ctx(
    settings: Any,
    ledger: Any,
    st_app: Any,
    spectrum_app: Any,
    enqueued: list[tuple[str, tuple[Any, ...]]],
) -> Iterator[Any]:
    from worker.context import build_context

    c = build_context(
        settings,
        enqueue=lambda name, args: enqueued.append((name, args)),
        st_transport=asgi_transport(st_app),
        spectrum_transport=asgi_transport(spectrum_app),
        retry_wait_s=0,
        ledger=ledger,
    )
    yield c
    c.close()


def _pg_available() -> bool:
    engine = create_engine(PG_URL)
    try:
        with engine.connect() as c:
            c.execute(text("select 1"))
        return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        engine.dispose()  # a pooled connection left to the GC is a ResourceWarning (an error)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh ledger database: a SQLite file, and a private schema on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}"
        return
    if not _pg_available():
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL}; start it (see README)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG_URL)
    with engine.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as c:
        c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
