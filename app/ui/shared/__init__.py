"""Pieces every workspace uses: style, background work, table models. Imports no workspace."""
