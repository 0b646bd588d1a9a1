"""Alembic's entry point: runs the revisions on the connection Lineside passes in.

No alembic.ini and no URL here: app/core/migrations/__init__.py opens the write
transaction, hands its connection over in config.attributes and commits afterwards.
"""

from alembic import context

from app.core import db

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "Lineside runs its migrations itself, on a connection it opens (app/core/migrations/__init__.py, "
        "'lineside migrate-schema PROJECT'); there is no alembic.ini to run them from the alembic command."
    )
context.configure(connection=connection, target_metadata=db.metadata)
with context.begin_transaction():  # inside the caller's transaction: commits nothing itself
    context.run_migrations()
