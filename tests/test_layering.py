"""Imports run one way: worker -> tasks -> (clients, mappers); mappers stay pure (DESIGN.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IO_LIBRARIES = {"httpx", "sqlalchemy", "celery", "kombu", "redis", "requests", "lxml",
                "defusedxml", "fastapi", "uvicorn", "smtplib", "socket", "tenacity", "psycopg"}
PURE_CLIENT_MODULES = {"clients.errors", "clients.servicetrade.models", "clients.spectrum.models",
                       "clients.spectrum.services", "clients.spectrum.formats",
                       "clients.spectrum.po_models"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def package_files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_there_is_something_to_check() -> None:
    assert len(package_files("mappers")) >= 8 and len(package_files("clients")) >= 10


@pytest.mark.parametrize("path", package_files("mappers"), ids=lambda p: p.name)
def test_mappers_import_no_io_and_only_pure_models(path: Path) -> None:
    for name in imports_of(path):
        root = name.split(".")[0]
        assert root not in IO_LIBRARIES, f"{path.name} imports {name}"
        assert root not in ("worker", "tasks", "sandbox"), f"{path.name} imports {name}"
        if root == "clients":
            assert name in PURE_CLIENT_MODULES, f"{path.name} imports {name} (not a pure model module)"


@pytest.mark.parametrize("path", package_files("clients"), ids=lambda p: p.name)
def test_clients_never_import_tasks_worker_or_sandbox(path: Path) -> None:
    for name in imports_of(path):
        assert name.split(".")[0] not in ("tasks", "worker", "sandbox", "mappers"), (
            f"{path.relative_to(REPO)} imports {name}")


@pytest.mark.parametrize("path", package_files("tasks"), ids=lambda p: p.name)
def test_tasks_never_import_the_sandbox(path: Path) -> None:
    for name in imports_of(path):
        assert name.split(".")[0] != "sandbox", f"{path.name} imports {name}"


def test_importing_mappers_loads_no_io_library() -> None:
    """Transitively, too: importing every mapper in a fresh interpreter pulls in no I/O library."""
    import subprocess

    code = (
        "import sys, importlib, pkgutil, mappers\n"
        "for m in pkgutil.iter_modules(mappers.__path__): importlib.import_module('mappers.' + m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {sorted(IO_LIBRARIES - {'socket'})!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"mappers pull in: {out.stdout.strip()}"
