"""Schema version 3: people (roles, PIN hashes), the hash-chained audit trail, and the
split column wide enough for "golden"."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SQLITE_TRIGGER = ("CREATE TRIGGER audit_log_no_{event} BEFORE {EVENT} ON audit_log "
                   "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
_PG_FUNCTION = ("CREATE OR REPLACE FUNCTION lineside_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$")
_PG_TRIGGER = ("CREATE TRIGGER audit_log_no_{event} BEFORE {EVENT} ON audit_log FOR EACH {each} "
               "EXECUTE FUNCTION lineside_audit_append_only()")


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_key", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("pin_hash", sa.String(128), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("kdf", sa.String(100), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.CheckConstraint("role IN ('engineer', 'operator')", name="ck_people_role"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("what", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(_SQLITE_TRIGGER.format(event=event.lower(), EVENT=event))
        # SQLite does not enforce VARCHAR lengths: "golden" fits the version-2 column as it is.
    else:
        if dialect == "postgresql":
            op.execute(_PG_FUNCTION)
            for event, each in (("UPDATE", "ROW"), ("DELETE", "ROW"), ("TRUNCATE", "STATEMENT")):
                op.execute(_PG_TRIGGER.format(event=event.lower(), EVENT=event, each=each))
        op.alter_column("images", "split", type_=sa.String(10), existing_type=sa.String(5))
    op.execute("UPDATE schema_version SET version = 3")


def downgrade() -> None:
    raise NotImplementedError("Lineside never downgrades a project; restore a backup instead.")
