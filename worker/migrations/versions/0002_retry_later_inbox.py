"""Recovery: due times on waiting rows (retry_later, the re-enqueuer) and the webhook inbox.

``sync_record`` gains ``next_attempt_at`` (when the re-enqueuer queues a waiting row again),
``retry_since`` (start of the current transient streak) and ``retry_rounds``. Rows that are
``pending`` when this runs get a due time of now: the first re-enqueuer run queues them once
(duplicates are harmless: the claim dedupes). ``inbox`` holds webhook wake-ups written before
ingest answers 2xx (durable acknowledgement).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("sync_record") as batch:
        batch.add_column(sa.Column("next_attempt_at", TS))
        batch.add_column(sa.Column("retry_since", TS))
        batch.add_column(sa.Column("retry_rounds", sa.Integer, nullable=False, server_default="0"))
        batch.create_index("ix_sync_record_due", ["status", "next_attempt_at"])
    op.execute(
        sa.text(
            "UPDATE sync_record SET next_attempt_at = CURRENT_TIMESTAMP WHERE status = 'pending'"
        )
    )
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.UniqueConstraint("connection", "task", "source_id", name="uq_inbox_key"),
    )
    op.create_index("ix_inbox_due", "inbox", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_inbox_due", table_name="inbox")
    op.drop_table("inbox")
    with op.batch_alter_table("sync_record") as batch:
        batch.drop_index("ix_sync_record_due")
        batch.drop_column("retry_rounds")
        batch.drop_column("retry_since")
        batch.drop_column("next_attempt_at")
