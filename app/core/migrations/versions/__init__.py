"""The Alembic revisions; Alembic loads them from this folder (see ../__init__.py)."""
