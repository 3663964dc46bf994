"""Is the ledger schema the one this stsync needs? Commands check; only `db upgrade` migrates."""

from __future__ import annotations

from sqlalchemy import Engine

from cli.errors import SchemaNotCurrent


def schema_revisions(engine: Engine) -> tuple[set[str], set[str]]:
    """``(revisions the database is at, head revisions this code ships)``."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from worker.migrate import alembic_config

    heads = set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current, heads


def schema_problem(engine: Engine) -> str | None:
    """One line saying what to do when the schema is not current; None when it is."""
    current, heads = schema_revisions(engine)
    if current == heads:
        return None
    where = engine.url.render_as_string(hide_password=True)
    if not current:
        return f"the ledger at {where} has no schema yet: run `stsync db upgrade` first"
    from alembic.script import ScriptDirectory

    from worker.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config(engine))
    known = {rev.revision for rev in script.walk_revisions()}
    at = ", ".join(sorted(current))
    if current - known:
        return (
            f"the ledger at {where} is at revision {at}, newer than this stsync knows "
            f"({', '.join(sorted(heads))}): upgrade stsync"
        )
    return (
        f"the ledger at {where} is at revision {at}, this stsync needs "
        f"{', '.join(sorted(heads))}: run `stsync db upgrade`"
    )


def require_current_schema(engine: Engine) -> None:
    """SchemaNotCurrent (one line, exit 2) unless the ledger is at this code's head revision."""
    problem = schema_problem(engine)
    if problem is not None:
        raise SchemaNotCurrent(problem, field="DATABASE_URL")
