"""Errors of stsync's own infrastructure that are worth retrying: the ledger or the broker did not
answer (a restart, a fail-over, a network blip). The pipeline and the task wrapper turn them into
``TransientError`` (issue 13: "broker or ledger hiccups" are transient causes, never final)."""

from __future__ import annotations

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,  # connection refused/lost, "database is locked"
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # connection pool exhausted
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,  # publishing a chained task while the broker is away
)


def describe(exc: BaseException) -> str:
    """A short reason that names the failing part, without the URL or credentials."""
    part = "the ledger" if isinstance(exc, sqlalchemy.exc.SQLAlchemyError) else "the broker"
    return f"{part} did not answer ({type(exc).__name__})"
