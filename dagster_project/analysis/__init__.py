"""Pure analysis helpers (no Dagster): statistics from library code, figures."""
