"""Initial ledger: sync records, code counters, audit events, watermarks, alerts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sync_record",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("record_type", sa.String(32), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spectrum_key", sa.String(64)),
        sa.Column("payload_digest", sa.String(64)),
        sa.Column("step", sa.String(64)),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("crashes", sa.Integer, nullable=False),
        sa.Column("error_kind", sa.String(32)),
        sa.Column("last_error", sa.Text),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_until", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("done_at", TS),
        sa.UniqueConstraint("connection", "record_type", "source_id", name="uq_sync_record_key"),
    )
    op.create_index("ix_sync_record_status", "sync_record", ["connection", "status"])
    op.create_index(
        "ix_sync_record_spectrum_key", "sync_record", ["connection", "record_type", "spectrum_key"]
    )
    op.create_table(
        "code_counter",
        sa.Column("connection", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("next_value", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("connection", sa.String(64)),
        sa.Column("record_type", sa.String(32)),
        sa.Column("source_id", sa.String(64)),
        sa.Column("system", sa.String(16), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("method", sa.String(8)),
        sa.Column("request_digest", sa.String(64)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("duration_ms", sa.Float),
        sa.Column("spectrum_key", sa.String(64)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_audit_record", "audit_event", ["connection", "record_type", "source_id"])
    op.create_table(
        "watermark",
        sa.Column("connection", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "alert",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("record_type", sa.String(32), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("problem_key", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("sent_at", TS),
        sa.UniqueConstraint(
            "connection", "record_type", "source_id", "problem_key", name="uq_alert"
        ),
    )


def downgrade() -> None:
    for table in ("alert", "watermark", "audit_event", "code_counter", "sync_record"):
        op.drop_table(table)
