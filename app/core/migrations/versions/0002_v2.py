"""Schema version 2: the train/val split, undo bookkeeping and the inspection log."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("split", sa.String(5)))
    op.add_column("labels", sa.Column("undoes", sa.Integer))
    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("model_version", sa.String(50)),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id")),
        sa.Column("image_sha", sa.String(64)),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("verdict", sa.String(4), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("defect_class", sa.String(200)),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.CheckConstraint("verdict IN ('PASS', 'FAIL')", name="ck_inspection_verdict"),
    )
    op.create_index("ix_inspections_at", "inspections", ["at"])
    op.execute("UPDATE schema_version SET version = 2")


def downgrade() -> None:
    raise NotImplementedError("Lineside never downgrades a project; restore a backup instead.")
