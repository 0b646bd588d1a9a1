"""Schema version 5: plant stations (their heartbeat), the model each line runs, and the
station and result id of each inspection (so a result sent twice is stored once)."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (nullable, no default) works on both databases without a table copy.
    op.add_column("inspections", sa.Column("station", sa.String(200)))
    op.add_column("inspections", sa.Column("result_uid", sa.String(64)))
    op.create_index("ix_inspections_result_uid", "inspections", ["result_uid"], unique=True)
    op.create_index("ix_inspections_station_at", "inspections", ["station", "at"])
    op.create_table(
        "stations",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("line", sa.String(200), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("model_version", sa.String(50)),
        sa.Column("model_sha", sa.String(64)),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("last_seen", sa.DateTime, nullable=False),
        sa.Column("day", sa.String(10)),
        sa.Column("parts_today", sa.Integer, nullable=False),
        sa.Column("fails_today", sa.Integer, nullable=False),
        sa.Column("buffered", sa.Integer, nullable=False),
        sa.Column("drift", sa.Text),
        sa.Column("message", sa.Text),
    )
    op.create_index("ix_stations_line", "stations", ["line"])
    op.create_table(
        "line_models",
        sa.Column("line", sa.String(200), primary_key=True),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("model_sha", sa.String(64), nullable=False),
        sa.Column("deployed_at", sa.DateTime, nullable=False),
        sa.Column("deployed_by", sa.String(200), nullable=False),
    )
    op.execute("UPDATE schema_version SET version = 5")


def downgrade() -> None:
    raise NotImplementedError("Lineside never downgrades a project; restore a backup instead.")
