"""Plain-Python core of fer-bias-warehouse: config, datasets, model adapters, downloads.

Nothing in this package imports Dagster, so it can be used from notebooks and scripts.
"""
