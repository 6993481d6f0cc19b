"""How the report writes numbers: estimates, intervals and p-values (one place for every table)."""

from __future__ import annotations

import pandas as pd


def fmt(value, digits: int = 3) -> str:
    """A number at `digits` decimals (significant digits below 1e-3, so a tiny rate is not 0.000);
    empty for a missing value, never 'nan' or '<NA>'."""
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def p_text(value) -> str:
    if value is None or pd.isna(value):
        return ""
    if value < 1e-300:  # underflow: the library returned 0
        return "< 1e-300"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def interval(estimate, low, high) -> str:
    """'estimate [low, high]', or the estimate alone where there is no interval."""
    if estimate is None or pd.isna(estimate):
        return ""
    if low is None or pd.isna(low):
        return fmt(estimate)
    return f"{fmt(estimate)} [{fmt(low)}, {fmt(high)}]"
