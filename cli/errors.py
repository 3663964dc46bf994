"""One clear line and a non-zero exit for the mistakes an operator makes, never a traceback.

Every ``stsync`` command runs inside :class:`OperatorErrors`: an exception that escapes a command is
turned into one line naming what is wrong and what to do (:func:`explain`), and an exit code:

- 2: the command or the configuration is wrong (unknown connection, bad config, ledger not
  migrated);
- 3: a service stsync needs is down or refuses it (broker, ledger database, read-only role);
- 1: anything else (``STSYNC_DEBUG=1`` shows the traceback).

Reasons are escaped for Rich (a ``[connections.main]`` in a reason is text, not markup).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup
from typer.exceptions import Abort, Exit, TyperException

from clients.errors import ConfigError

if TYPE_CHECKING:
    from worker.settings import Settings

#: exit codes
USAGE = 2
UNAVAILABLE = 3
UNEXPECTED = 1

#: set to any non-empty value to let exceptions through with their traceback
DEBUG_ENV = "STSYNC_DEBUG"


def stopped(what: str, exc: Exception) -> Exit:
    """Report on stderr a long-running command stopped by ``exc`` (the reason escaped, never
    read as markup); the exit (1) to raise."""
    Console(stderr=True).print(
        f"[red]{what} stopped[/red] ({type(exc).__name__}): {escape(str(exc))}", highlight=False
    )
    return Exit(UNEXPECTED)


class SchemaNotCurrent(ConfigError):
    """The ledger's schema is not at the revision this stsync needs (``stsync db upgrade``)."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text (drivers add SQL and hints below it)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def _safe_url(url: str | None) -> str:
    if not url:
        return "?"
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display: never fail while reporting a failure
        return url.split("@")[-1]


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _is_read_only(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    text = str(orig or exc).lower()
    return sqlstate in ("42501", "25006") or any(
        s in text
        for s in (
            "permission denied",
            "read-only transaction",
            "readonly database",
            "read only database",
        )
    )


def explain(
    exc: BaseException, *, database_url: str | None = None, broker_url: str | None = None
) -> tuple[int, str]:
    """``(exit code, one line of Rich markup)`` for an exception that escaped a command."""
    import sqlalchemy.exc as sa_exc

    if isinstance(exc, SchemaNotCurrent):
        return USAGE, f"[red]ledger not migrated[/red]: {escape(str(exc))}"
    if isinstance(exc, ConfigError):
        return USAGE, f"[red]configuration error[/red]: {escape(str(exc))}"
    if isinstance(exc, sa_exc.DBAPIError):
        where = escape(_safe_url(database_url))
        if _is_read_only(exc):
            return UNAVAILABLE, (
                f"[red]the ledger database refuses to write[/red] ({where}): "
                f"{escape(first_line(exc.orig or exc))}; stsync needs a role that may insert and "
                "update the ledger tables (see docs/deploy.md)"
            )
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return UNAVAILABLE, (
                f"[red]cannot reach the ledger database[/red] ({where}): "
                f"{escape(first_line(exc.orig or exc))}; is it running? (DATABASE_URL)"
            )
        return UNEXPECTED, (
            f"[red]ledger database error[/red] ({where}): {escape(first_line(exc.orig or exc))}"
        )
    if _is_broker_down(exc):
        where = escape(_safe_url(broker_url)) if broker_url else "BROKER_URL"
        return UNAVAILABLE, (
            f"[red]cannot reach the broker[/red] ({where}): {escape(first_line(exc))}; "
            "is Redis running? (BROKER_URL, or `stsync broker start` for the embedded one)"
        )
    if isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError):
        return USAGE, f"[red]{escape(type(exc).__name__)}[/red]: {escape(str(exc))}"
    return UNEXPECTED, (
        f"[red]unexpected error[/red] ({escape(type(exc).__name__)}): {escape(first_line(exc))} "
        f"(run again with {DEBUG_ENV}=1 for the traceback)"
    )


def _is_broker_down(exc: BaseException) -> bool:
    import kombu.exceptions
    import redis.exceptions

    return any(
        isinstance(
            e,
            kombu.exceptions.OperationalError
            | redis.exceptions.ConnectionError
            | redis.exceptions.TimeoutError
            | ConnectionRefusedError,
        )
        for e in _chain(exc)
    )


def _urls() -> tuple[str | None, str | None]:
    """The ledger and broker URLs of the loaded configuration, for the error line."""
    from worker.settings import CONFIG_ENV

    try:
        from worker.settings import load_settings

        config = os.environ.get(CONFIG_ENV)
        settings = load_settings(config) if config else None
    except Exception:  # noqa: BLE001 - only for display
        settings = None
    if settings is None:
        return os.environ.get("DATABASE_URL"), os.environ.get("BROKER_URL")
    return settings.database_url, settings.broker_url


def _to_stderr(line: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(line, highlight=False)


#: where the one line goes; cli/main.py points it at its own stderr console
report: Callable[[str], None] = _to_stderr


def settings_or_exit(config: Path | None) -> Settings:
    """The settings, or one line naming the configuration error and exit code 2 (every stsync
    command loads its settings through here). ``config`` becomes the process's config path, so
    what the command starts (workers, a scratch context) reads the same file."""
    from worker.settings import CONFIG_ENV, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        report(f"[red]configuration error[/red]: {escape(str(exc))}")
        raise Exit(USAGE) from None
    if config:
        os.environ[CONFIG_ENV] = str(config)
    return settings


#: what the running command opened (ledger engines, clients), released when it ends
_opened: list[Callable[[], None]] = []


def close_on_exit(close: Callable[[], None]) -> None:
    """Call ``close`` when the command ends, however it ends (database connections are closed,
    not left to the garbage collector)."""
    _opened.append(close)


def _close_opened() -> None:
    while _opened:
        close = _opened.pop()
        # releasing a resource of a command that has ended: never fail because of it
        with contextlib.suppress(Exception):
            close()


class OperatorErrors(TyperGroup):
    """The ``stsync`` group: exceptions from any command become one line and an exit code, and
    whatever the command opened is closed when it ends."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return self._invoke(ctx)
        finally:
            _close_opened()

    def _invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (Exit, Abort, TyperException):  # typer's own exits, aborts and usage errors
            raise
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            database_url, broker_url = _urls()
            code, line = explain(exc, database_url=database_url, broker_url=broker_url)
            report(line)
            raise Exit(code) from None
