"""Figures from the marts (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd


def pyplot():
    """matplotlib.pyplot on the Agg backend (PNG files, no display), imported on first use: the
    import costs ~1.5 s CPU, which every load of the code location (each UI run) need not pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


BASIC_SEVEN = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
EMOTION_ORDER = [
    "anger", "disgust", "fear", "happy", "neutral", "sad", "surprise", "calm", "contempt", "confusion",
]


def slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(parts)).strip("_")


def _ordered(labels) -> list[str]:
    labels = set(labels)
    return [e for e in EMOTION_ORDER if e in labels] + sorted(labels - set(EMOTION_ORDER))


def confusion_table(counts: pd.DataFrame, truth: list[str], predicted: list[str]) -> pd.DataFrame:
    """Counts (rows of marts.confusion_counts) -> true x predicted table in the given order."""
    return (
        counts.pivot_table(index="true_emotion", columns="predicted_emotion", values="n", aggfunc="sum")
        .reindex(index=truth, columns=predicted)
        .fillna(0)
    )


def _axes_labels(counts: pd.DataFrame) -> tuple[list[str], list[str]]:
    truth = _ordered(counts["true_emotion"])
    # Every basic emotion is a column, so "never predicted" is visible rather than absent.
    return truth, _ordered(set(counts["predicted_emotion"]) | set(truth) | set(BASIC_SEVEN))


def _draw_confusion(ax, table: pd.DataFrame, fontsize: int = 7):
    shares = table.div(table.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
    image = ax.imshow(shares.values, cmap="Blues", vmin=0, vmax=1)
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            colour = "white" if shares.values[i, j] > 0.5 else "black"
            # in_layout=False: a cell's label lies inside the axes, so tight_layout need not
            # measure each of them (a race x gender grid has 392)
            ax.text(j, i, f"{int(table.values[i, j])}\n{shares.values[i, j]:.0%}", ha="center", va="center",
                    fontsize=fontsize, color=colour, in_layout=False)
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right")
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return image


def confusion_matrix_png(counts: pd.DataFrame, title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (true emotion x predicted emotion) with counts."""
    plt = pyplot()
    truth, predicted = _axes_labels(counts)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.0 + 0.8 * len(predicted)), 2.0 + 0.6 * len(truth)))
    image = _draw_confusion(ax, confusion_table(counts, truth, predicted))
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of row")
    return save_png(fig, path)


def group_confusion_matrices_png(counts: pd.DataFrame, title: str, path: Path) -> Path:
    """One row-normalised confusion matrix per group of ONE grouping (rows of
    marts.confusion_counts with a single grouping: race, gender or race_gender), side by
    side on the same axes, so a confusion that only one group suffers is visible."""
    plt = pyplot()
    truth, predicted = _axes_labels(counts)
    groups = sorted(counts["group_value"].astype(str).unique())
    columns = min(3, max(len(groups), 1))
    rows = -(-max(len(groups), 1) // columns)
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(columns * max(5.0, 0.7 * len(predicted)), rows * (1.8 + 0.55 * len(truth))))
    for ax, group in zip(axes.flat, groups):
        part = counts[counts["group_value"].astype(str) == group]
        _draw_confusion(ax, confusion_table(part, truth, predicted), fontsize=6)
        ax.set_title(f"{group} (n = {int(part['n'].sum())})", fontsize=8)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    return save_png(fig, path)


def accuracy_heatmap_png(accuracy: pd.DataFrame, title: str, path: Path) -> Path:
    """Accuracy per group (rows) x true emotion (columns), annotated with n."""
    plt = pyplot()
    groups = sorted(accuracy["group_value"].unique())
    emotions = _ordered(set(accuracy["true_emotion"]) - {"all"}) + ["all"]
    acc = accuracy.pivot_table(index="group_value", columns="true_emotion", values="accuracy").reindex(
        index=groups, columns=emotions
    )
    n = accuracy.pivot_table(index="group_value", columns="true_emotion", values="n").reindex(
        index=groups, columns=emotions
    )
    fig, ax = plt.subplots(figsize=(max(6.5, 2.5 + 1.0 * len(emotions)), 1.5 + 0.5 * len(groups)))
    image = ax.imshow(acc.values.astype(float), cmap="RdYlGn", vmin=0, vmax=1)
    for i in range(len(groups)):
        for j in range(len(emotions)):
            if not np.isnan(acc.values[i, j]):
                ax.text(j, i, f"{acc.values[i, j]:.2f}\nn={int(n.values[i, j])}", ha="center", va="center", fontsize=7,
                        in_layout=False)
    ax.set_xticks(range(len(emotions)), emotions, rotation=45, ha="right")
    ax.set_yticks(range(len(groups)), groups)
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, label="accuracy")
    return save_png(fig, path)


def forest_plot_png(accuracy: pd.DataFrame, title: str, path: Path, min_n: int = 0) -> Path:
    """Error rate per group with its Wilson 95 % interval, one panel row per group. Groups with
    fewer than `min_n` answered images (statistics.min_cell_n) are not drawn -- their intervals
    span most of the axis and say nothing -- and the title counts them."""
    plt = pyplot()
    small = (accuracy["n"] < min_n) & (accuracy["grouping"] != "all")
    if small.any():
        title += f"\n{int(small.sum())} group(s) below min_cell_n = {min_n} not drawn"
    frame = accuracy[~small].sort_values(["grouping", "group_value"]).reset_index(drop=True)
    error = 1 - frame["accuracy"].astype(float)
    low = 1 - frame["ci_high"].astype(float)
    high = 1 - frame["ci_low"].astype(float)
    labels = [f"{g}: {v} (n={int(n)})" for g, v, n in zip(frame["grouping"], frame["group_value"], frame["n"])]
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.35 * len(frame)))
    y = np.arange(len(frame))[::-1]
    # Rounding can put a bound a hair past the estimate (e.g. 100 % accuracy); clip to 0.
    xerr = [np.clip(error - low, 0, None), np.clip(high - error, 0, None)]
    ax.errorbar(error, y, xerr=xerr, fmt="o", color="black", ecolor="grey", capsize=3)
    overall = frame.loc[frame["grouping"] == "all", "accuracy"]
    if len(overall):
        ax.axvline(1 - float(overall.iloc[0]), color="tab:red", linestyle="--", linewidth=1, label="overall")
        ax.legend(loc="lower right", fontsize=7)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("error rate (Wilson 95 % CI)")
    ax.set_title(title, fontsize=8)
    return save_png(fig, path)


def save_png(fig, path: Path) -> Path:
    """Lay out `fig` (tight_layout), write it to `path` as a PNG (110 dpi) and close it."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # tight_layout leaves a placeholder layout engine, and savefig draws a figure with an engine
    # twice (once to lay it out, once to print): the second layout is the same, and text-heavy
    # figures (a confusion grid has ~400 cell labels) spent half their time on it.
    fig.set_layout_engine(None)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
