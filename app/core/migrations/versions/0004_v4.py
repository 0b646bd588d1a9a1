"""Schema version 4: the training queue (train_jobs) and each job's progress events."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "train_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requested_at", sa.DateTime, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("worker", sa.String(200)),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("heartbeat_at", sa.DateTime),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("result_version", sa.String(50)),
        sa.Column("error", sa.Text),
        sa.CheckConstraint("state IN ('queued', 'running', 'done', 'failed', 'cancelled')",
                           name="ck_train_job_state"),
    )
    op.create_index("ix_train_jobs_state", "train_jobs", ["state", "id"])
    op.create_table(
        "train_job_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("train_jobs.id"), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("event", sa.JSON, nullable=False),
    )
    op.create_index("ix_train_job_events_job", "train_job_events", ["job_id", "id"])
    op.execute("UPDATE schema_version SET version = 4")


def downgrade() -> None:
    raise NotImplementedError("Lineside never downgrades a project; restore a backup instead.")
