"""The layers hold, and the check that says so can fail.

Imports run down only: entry points (cli, ingest) -> tasks -> runtime (worker) -> mappers ->
clients; production code never imports the sandbox; mappers are pure; no package has an import
cycle. The contracts live in pyproject.toml (``[tool.importlinter]``) and ``make lint`` runs them
with ``lint-imports``; here they run against this tree, and against copies of it with one forbidden
import added (absolute, relative, or lazy inside a function), each of which must break its contract.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
IO_LIBRARIES = {
    "httpx",
    "sqlalchemy",
    "celery",
    "kombu",
    "redis",
    "requests",
    "lxml",
    "defusedxml",
    "fastapi",
    "uvicorn",
    "smtplib",
    "socket",
    "tenacity",
    "psycopg",
}
#: the clients modules a mapper may import: models and wire constants, no I/O
PURE_CLIENT_MODULES = {
    "clients",
    "clients.errors",
    "clients.digest",
    "clients.servicetrade",
    "clients.servicetrade.models",
    "clients.servicetrade.assumptions",
    "clients.spectrum",
    "clients.spectrum.models",
    "clients.spectrum.services",
    "clients.spectrum.formats",
    "clients.spectrum.po_models",
    "clients.spectrum.assumptions",
}


def config() -> dict[str, Any]:
    tool: dict[str, Any] = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return tool


def contract(contract_id: str) -> dict[str, Any]:
    return next(c for c in config()["contracts"] if c["id"] == contract_id)


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = REPO) -> set[str]:
    """Every module ``path`` imports, anywhere in it (functions too), relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package.pop()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            found.add(stem)
            # ``from pkg import mod`` imports the module pkg.mod when there is one
            found.update(
                f"{stem}.{alias.name}"
                for alias in node.names
                if (root / Path(*f"{stem}.{alias.name}".split("."))).with_suffix(".py").exists()
                or (root / Path(*f"{stem}.{alias.name}".split("."))).is_dir()
            )
    return found


def package_files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def lint_imports(cwd: Path, *contract_ids: str) -> subprocess.CompletedProcess[str]:
    args = [str(LINT_IMPORTS), "--no-cache"]
    for cid in contract_ids:
        args += ["--contract", cid]
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_there_is_something_to_check() -> None:
    assert len(package_files("mappers")) >= 8 and len(package_files("clients")) >= 10
    ids = {c["id"] for c in config()["contracts"]}
    assert {"layers", "no-sandbox", "pure-mappers", "no-cycles"} <= ids
    assert contract("layers")["layers"] == [
        "cli",
        "ingest",
        "tasks",
        "worker",
        "mappers",
        "clients",
    ]


def test_the_import_contracts_hold() -> None:
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


#: (file, line appended to it, the contract it breaks, the import the report must name)
FORBIDDEN_IMPORTS = [
    ("tasks/customer.py", "import cli.main", "layers", "tasks.customer -> cli.main"),
    (
        "worker/serve.py",
        "def _up() -> None:\n    from tasks import customer  # noqa: F401\n",
        "layers",
        "worker.serve -> tasks",
    ),
    (
        "clients/http.py",
        "from worker.ledger import Ledger  # noqa: F401",
        "layers",
        "clients.http -> worker.ledger",
    ),
    (
        "ingest/app.py",
        "from sandbox import seed  # noqa: F401",
        "no-sandbox",
        "ingest.app -> sandbox.seed",
    ),
    (
        "mappers/customer.py",
        "import httpx  # noqa: F401",
        "pure-mappers",
        "mappers.customer -> httpx",
    ),
    # relative, and only indirectly reached from the mappers: a "pure" module pulling in the client
    (
        "clients/spectrum/services.py",
        "from .client import SpectrumClient  # noqa: F401",
        "pure-mappers",
        "clients.spectrum.services -> clients.spectrum.client",
    ),
    (
        "worker/celery_app.py",
        "def _ctx() -> None:\n    from worker import context  # noqa: F401\n",
        "no-cycles",
        "celery_app",
    ),
    (
        "sandbox/run.py",
        "from worker import settings  # noqa: F401",
        "sandbox-uses-clients-only",
        "sandbox.run -> worker.settings",
    ),
]


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and the contracts, copied once (each case edits one file and restores it)."""
    root = tmp_path_factory.mktemp("tree")
    for package in config()["root_packages"]:
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    shutil.copy(PYPROJECT, root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("path", "line", "contract_id", "named"),
    FORBIDDEN_IMPORTS,
    ids=[f"{c[2]}:{c[0]}" for c in FORBIDDEN_IMPORTS],
)
def test_a_forbidden_import_breaks_its_contract(
    tree_copy: Path, path: str, line: str, contract_id: str, named: str
) -> None:
    assert lint_imports(tree_copy, contract_id).returncode == 0  # the copy is clean before
    target = tree_copy / path
    original = target.read_text()
    target.write_text(f"{original}\n{line}\n")
    try:
        out = lint_imports(tree_copy, contract_id)
    finally:
        target.write_text(original)
    assert out.returncode != 0, out.stdout
    assert "1 broken" in out.stdout and named in out.stdout, out.stdout


def test_every_clients_module_is_classified_pure_or_forbidden_to_mappers() -> None:
    """A new clients module must be declared: pure (mappers may import it) or not (the contract
    forbids it to mappers, directly and indirectly)."""
    forbidden = {
        m for m in contract("pure-mappers")["forbidden_modules"] if m.startswith("clients")
    }
    modules = {module_name(p) for p in package_files("clients")}
    assert not forbidden & PURE_CLIENT_MODULES
    assert modules - PURE_CLIENT_MODULES == forbidden
    assert forbidden.issubset(modules) and PURE_CLIENT_MODULES.issubset(modules)
    assert IO_LIBRARIES - {"requests"} <= set(contract("pure-mappers")["forbidden_modules"])


@pytest.mark.parametrize("path", package_files("mappers"), ids=lambda p: p.name)
def test_mappers_import_no_io_and_only_pure_models(path: Path) -> None:
    for name in imports_of(path):
        root = name.split(".")[0]
        assert root not in IO_LIBRARIES, f"{path.name} imports {name}"
        assert root not in ("worker", "tasks", "sandbox", "cli", "ingest"), (
            f"{path.name} imports {name}"
        )
        if root == "clients":
            assert name in PURE_CLIENT_MODULES, (
                f"{path.name} imports {name} (not a pure model module)"
            )


def test_imports_of_resolves_relative_and_lazy_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "mappers" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "mappers" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("")
    probe = pkg / "probe.py"
    probe.write_text("from . import helper\nfrom ..text import clean\ndef f():\n    import httpx\n")
    assert imports_of(probe, tmp_path) >= {
        "mappers.sub",
        "mappers.sub.helper",
        "mappers.text",
        "httpx",
    }


def test_beat_schedule_names_tasks_without_importing_them() -> None:
    """beat_schedule.py is a top-level module (outside the contracts' packages): it sits with the
    runtime and names tasks by string."""
    for name in imports_of(REPO / "beat_schedule.py"):
        assert name.split(".")[0] not in ("cli", "ingest", "tasks", "sandbox"), name


def test_importing_mappers_loads_no_io_library() -> None:
    """Transitively, too: importing every mapper in a fresh interpreter pulls in no I/O library."""
    code = (
        "import sys, importlib, pkgutil, mappers\n"
        "for m in pkgutil.iter_modules(mappers.__path__): importlib.import_module('mappers.' + m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {sorted(IO_LIBRARIES - {'socket'})!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"mappers pull in: {out.stdout.strip()}"


def test_the_worker_registers_every_task_module_by_name() -> None:
    """The Celery app names the tasks package by string and importing it registers every task
    module (none skipped silently, as the old list of optional modules did)."""
    code = (
        "import sys\n"
        "from worker.celery_app import TASK_PACKAGES, app\n"
        "assert not any(m == 'tasks' or m.startswith('tasks.') for m in sys.modules), 'early'\n"
        "app.loader.import_default_modules()\n"
        "from celery.signals import worker_process_init as init\n"
        "print(' '.join(sorted(n for n in app.tasks if not n.startswith('celery.'))))\n"
        "print(' '.join(getattr(r(), '__qualname__', '?') for _, r in init.receivers))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    tasks, receivers = out.stdout.splitlines()
    names = set(tasks.split())
    assert {
        "sync.customer",
        "sync.site",
        "sync.job",
        "sync.job.send",
        "sync.invoice",
        "sync.timecard",
        "sync.po_line",
        "schedule.sweep",
        "schedule.po_poll",
        "schedule.send_alerts",
        "schedule.timecard_catch_up",
    } <= names
    # each pool process opens its clients after fork: worker.context's handler, loaded with the tasks
    assert "_open_clients" in receivers.split()
