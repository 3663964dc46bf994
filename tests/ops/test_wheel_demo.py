"""Packaging: the built wheel, installed into a fresh venv, runs ``stsync demo`` from any
directory (its data files — the demo config, the Alembic scripts — are in the wheel) and leaves
no redis-server behind; a demo that fails half-way stops the embedded Redis it started.

To stay fast in ``make test``, the fresh venv gets the wheel itself with ``--no-deps`` and sees
the dependencies through a ``.pth`` line naming the test interpreter's site-packages (no
download); ``pip check`` proves the wheel's declared requirements are met there. The source tree
is never on the path: the wheel is built from a copy, the demo runs in an empty directory, and a
check asserts every stsync module is imported from the fresh venv.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.wheel

#: what the wheel is built from (the Dockerfile copies the same)
SOURCES = ("pyproject.toml", "README.md", "beat_schedule.py")
PACKAGES = ("cli", "ingest", "worker", "tasks", "mappers", "clients", "sandbox")


def _redis_servers_under(path: Path) -> list[psutil.Process]:
    """redis-server processes working in a directory under ``path`` (the embedded Redis runs
    with ``--dir <data dir>/redis``; its command line is rewritten to ``<binary> host:port``)."""
    out = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if "redis-server" not in " ".join(proc.info["cmdline"] or []):
                continue
            if Path(proc.cwd()).is_relative_to(path):
                out.append(proc)
        except psutil.Error:
            continue
    return out


def _no_redis_left(path: Path) -> list[int]:
    """Pids of redis-servers left under ``path`` (stopped here, so a failing test leaks none)."""
    left = _redis_servers_under(path)
    for proc in left:
        proc.kill()
    return [p.pid for p in left]


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STSYNC_", "PYTHON", "VIRTUAL_ENV"))
        and k not in ("BROKER_URL", "DATABASE_URL")
    }
    env["HOME"] = os.environ.get("HOME", str(tmp))
    return env


def test_wheel_demo_runs_from_a_fresh_venv_and_leaks_no_redis(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        shutil.copy2(REPO / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("stsync-*.whl")
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    py = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--quiet",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    check = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = _clean_env(tmp_path)
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import importlib, sys\n"
            "for m in ('cli.main', 'cli.demo', 'sandbox', 'worker.migrate', 'tasks.invoice', "
            "'ingest.app', 'beat_schedule'):\n"
            "    print(importlib.import_module(m).__file__)\n",
        ],
        cwd=run_dir,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    for path in where.stdout.split():
        assert path.startswith(str(site)), f"{path} is not from the wheel ({site})"

    version = subprocess.run(
        [str(venv / "bin" / "stsync"), "--version"],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.returncode == 0 and version.stdout.strip() == "stsync 0.1.0", version

    data = run_dir / "demo-data"
    demo = subprocess.run(
        [
            str(venv / "bin" / "stsync"),
            "demo",
            "--companies",
            "1",
            "--timeout",
            "240",
            "--data-dir",
            str(data),
        ],
        cwd=run_dir,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=420,
    )
    out = demo.stdout + demo.stderr
    assert demo.returncode == 0, out[-4000:]
    assert "What landed in Spectrum" in out and "AR invoices" in out, out[-4000:]
    assert (data / "ledger.sqlite").exists()
    assert _no_redis_left(tmp_path) == [], "the demo left a redis-server running"


def test_wheel_demo_that_fails_half_way_stops_its_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from cli import demo
    from worker import embedded_redis

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("the sandbox could not start")

    monkeypatch.setattr("sandbox.run.start_sandbox", broken)
    data = tmp_path / "demo"
    with pytest.raises(RuntimeError, match="could not start"):
        demo.run_demo(
            data_dir=data, companies=1, timeout=5, keep=False, console=Console(file=io.StringIO())
        )
    left = _no_redis_left(tmp_path)
    assert embedded_redis.running_url(data) is None
    assert left == []
