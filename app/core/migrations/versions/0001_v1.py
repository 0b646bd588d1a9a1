"""Schema version 1: images, tags, classes, the label history, model versions, settings.

The tables as version 1 of Lineside created them (frozen: later changes are later
revisions). A project of that release is stamped with this revision, not rebuilt.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    version = op.create_table("schema_version", sa.Column("version", sa.Integer, nullable=False))
    op.create_table(
        "settings",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.JSON),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("filename", sa.String(500), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("captured_at", sa.DateTime, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
    )
    op.create_table(
        "image_tags",
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.String(1000), nullable=False),
    )
    op.create_table(
        "classes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("color", sa.String(7), nullable=False),
        sa.Column("shortcut", sa.Integer),
    )
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False),
        sa.Column("verdict", sa.String(200)),
        sa.Column("mask_path", sa.String(500)),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_labels_image", "labels", ["image_id", "id"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.String(50), nullable=False, unique=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("folder", sa.String(500), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
        sa.CheckConstraint("status IN ('candidate', 'production', 'retired')", name="ck_model_status"),
    )
    op.bulk_insert(version, [{"version": 1}])


def downgrade() -> None:
    raise NotImplementedError("Lineside never downgrades a project; restore a backup instead.")
