"""Figures for the dimensional / response-style statistics (matplotlib, Agg backend, PNG).

Each function takes a frame, a title and a path, writes a PNG there and returns the path.
Numbers drawn come from the statistics tables (dimensional.py, response_style.py); the
Bland-Altman plot only arranges the pairs (mean, difference, bias +- 1.96 SD).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

EMOTION_ORDER = [
    "anger", "angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "calm", "contempt", "confusion",
]
LOA_MULTIPLIER = 1.96
SCALE_MIDPOINT = 5.0


def _ordered(labels) -> list[str]:
    labels = {str(v) for v in labels}
    return [e for e in EMOTION_ORDER if e in labels] + sorted(labels - set(EMOTION_ORDER))


def _colours(labels: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _empty(ax, message: str = "no data") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def bland_altman_png(pairs: pd.DataFrame, title: str, path: Path) -> Path:
    """Bland-Altman plot: mean of (model, human mean) vs difference model - human, coloured by
    intended emotion, with the bias and the 95 % limits of agreement (bias +- 1.96 SD)."""
    frame = pairs.dropna(subset=["model_value", "human_mean"])
    fig, ax = plt.subplots(figsize=(7, 5))
    if frame.empty:
        _empty(ax)
    else:
        mean = (frame["model_value"] + frame["human_mean"]) / 2
        diff = frame["model_value"] - frame["human_mean"]
        emotions = frame["true_emotion"].fillna("unknown").astype(str)
        colours = _colours(_ordered(emotions.unique()))
        for emotion in _ordered(emotions.unique()):
            mask = emotions == emotion
            ax.scatter(mean[mask], diff[mask], s=14, alpha=0.6, color=colours[emotion], label=emotion)
        bias = float(diff.mean())
        sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
        ax.axhline(bias, color="black", linewidth=1.2, label=f"bias {bias:+.2f}")
        for value, name in ((bias - LOA_MULTIPLIER * sd, "lower"), (bias + LOA_MULTIPLIER * sd, "upper")):
            ax.axhline(value, color="tab:red", linestyle="--", linewidth=1, label=f"{name} LoA {value:+.2f}")
        ax.axhline(0, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xlabel("mean of model and human mean rating")
        ax.set_ylabel("model - human mean")
        ax.legend(fontsize=7, loc="best", ncol=2)
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


def bias_bars_png(dimensional_frame: pd.DataFrame, title: str, path: Path) -> Path:
    """Per-emotion Bland-Altman bias (model - human) with its 95 % CI, one panel per dimension,
    one bar per model (rows measure 'bland_altman_bias', subset_kind 'emotion')."""
    frame = dimensional_frame[(dimensional_frame["measure"] == "bland_altman_bias")
                              & (dimensional_frame["subset_kind"] == "emotion")].copy()
    if "dimension" not in frame:
        frame["dimension"] = ""
    dimensions = sorted(frame["dimension"].unique()) or [""]
    fig, axes = plt.subplots(1, len(dimensions), figsize=(max(6.5, 5.5 * len(dimensions)), 4.5), squeeze=False)
    for ax, dimension in zip(axes[0], dimensions):
        panel = frame[frame["dimension"] == dimension]
        if panel.empty:
            _empty(ax)
            continue
        panel = panel.assign(label=panel["model"] + " " + panel["model_version"])
        emotions = _ordered(panel["subset"].unique())
        models = sorted(panel["label"].unique())
        width = 0.8 / len(models)
        colours = _colours(models)
        x = np.arange(len(emotions))
        for i, model in enumerate(models):
            sub = panel[panel["label"] == model].groupby("subset")[["estimate", "ci_low", "ci_high"]].mean()
            sub = sub.reindex(emotions)
            est = sub["estimate"].to_numpy(float)
            err = [np.clip(est - sub["ci_low"].to_numpy(float), 0, None),
                   np.clip(sub["ci_high"].to_numpy(float) - est, 0, None)]
            err = [np.nan_to_num(e) for e in err]
            ax.bar(x + (i - (len(models) - 1) / 2) * width, est, width, yerr=err, capsize=3,
                   color=colours[model], label=model)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, emotions, rotation=45, ha="right")
        ax.set_ylabel("bias: model - human mean (95 % CI)")
        ax.set_title(dimension or "bias", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    return _save(fig, path)


def strength_inversion_png(per_emotion_means: pd.DataFrame, title: str, path: Path) -> Path:
    """Valence strength |valence - 5| (x) vs arousal (y) per intended emotion, one marker set
    per rater type (humans vs model), points labelled with the emotion, and an arrow from the
    humans' point to each model's point for the same emotion."""
    frame = per_emotion_means.dropna(subset=["valence", "arousal"]).copy()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    if frame.empty:
        _empty(ax)
        ax.set_title(title, fontsize=8)
        return _save(fig, path)
    frame["strength"] = (frame["valence"] - SCALE_MIDPOINT).abs()
    frame["rater_type"] = frame["rater_type"].astype(str)
    raters = ["human"] * ("human" in set(frame["rater_type"])) + sorted(set(frame["rater_type"]) - {"human"})
    colours = _colours(raters)
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    human = frame[frame["rater_type"] == "human"].groupby("true_emotion")[["strength", "arousal"]].mean()
    for i, rater in enumerate(raters):
        sub = frame[frame["rater_type"] == rater].groupby("true_emotion")[["strength", "arousal"]].mean()
        ax.scatter(sub["strength"], sub["arousal"], s=45, color=colours[rater], marker=markers[i % len(markers)],
                   label=rater, zorder=3)
        for emotion, point in sub.iterrows():
            ax.annotate(str(emotion), (point["strength"], point["arousal"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color=colours[rater])
            if rater != "human" and emotion in human.index:
                start = human.loc[emotion]
                ax.annotate("", xy=(point["strength"], point["arousal"]), xytext=(start["strength"], start["arousal"]),
                            arrowprops={"arrowstyle": "->", "color": "grey", "alpha": 0.5, "linewidth": 0.8})
    ax.set_xlabel("mean valence strength |valence - 5|")
    ax.set_ylabel("mean arousal")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


def adjusted_forest_png(tests: pd.DataFrame, title: str, path: Path, alpha: float = 0.05) -> Path:
    """Forest plot of estimates with their CI (any frame with estimate / ci_low / ci_high /
    subset / p_adjusted); filled red markers where p_adjusted < alpha, hollow grey otherwise."""
    frame = tests.reset_index(drop=True)
    label_parts = [c for c in ("model", "dimension") if c in frame and frame[c].nunique() > 1]
    labels = [" / ".join([*(str(row[c]) for c in label_parts), str(row["subset"])]) for _, row in frame.iterrows()]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * max(len(frame), 1)))
    if frame.empty:
        _empty(ax)
        ax.set_title(title, fontsize=8)
        return _save(fig, path)
    y = np.arange(len(frame))[::-1]
    est = frame["estimate"].to_numpy(float)
    low = frame["ci_low"].to_numpy(float)
    high = frame["ci_high"].to_numpy(float)
    err = [np.nan_to_num(np.clip(est - low, 0, None)), np.nan_to_num(np.clip(high - est, 0, None))]
    significant = (pd.to_numeric(frame["p_adjusted"], errors="coerce") < alpha).to_numpy()
    ax.errorbar(est, y, xerr=err, fmt="none", ecolor="grey", capsize=3)
    ax.scatter(est[significant], y[significant], color="tab:red", zorder=3, label=f"p_adjusted < {alpha}")
    ax.scatter(est[~significant], y[~significant], facecolors="white", edgecolors="grey", zorder=3,
               label="not significant")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("estimate (95 % CI)")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


__all__ = ["adjusted_forest_png", "bias_bars_png", "bland_altman_png", "strength_inversion_png"]
