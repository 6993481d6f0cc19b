"""A small plot of an adaptive window over time (`AdaptiveLimiter.report()`), for run notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_window(report: dict[str, Any], path: str | Path) -> Path:
    """A PNG of the window (and calls in flight) over time from `AdaptiveLimiter.report()`;
    rounds with 429s are marked; the pace, while calls are paced, on its own axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = report.get("history") or []
    t = [h["t"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.step(t, [h["window"] for h in history], where="post", label="window")
    ax.plot(t, [h["active"] for h in history], ".", ms=3, alpha=0.6, label="calls in flight")
    limited = [h for h in history if h["rate_limited"]]
    ax.plot([h["t"] for h in limited], [h["window"] for h in limited], "rx", ms=5, label="round with 429s")
    if any(h.get("pace_per_s") is not None for h in history):  # the pace: calls started per second
        pace_axis = ax.twinx()
        pace_axis.step(t, [h.get("pace_per_s") or float("nan") for h in history], where="post", color="tab:green",
                       label="pace (calls/s)")
        pace_axis.set_ylabel("pace, calls per second", color="tab:green", fontsize=8)
        pace_axis.set_ylim(bottom=0)
    ax.axhline(report.get("max_in_flight", 0), color="grey", lw=0.8, ls="--", label="max_in_flight")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("requests")
    ax.set_title(str(report.get("key", "")), fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
