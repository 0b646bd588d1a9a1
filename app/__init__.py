"""Lineside: quality inspection at the production line."""
__version__ = "0.1.0"
