"""Dagster definitions of fer-bias-warehouse (see definitions.py)."""
