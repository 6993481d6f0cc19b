"""Figures for the dimensional / response-style statistics (matplotlib, Agg backend, PNG).

Each function takes a frame, a title and a path, writes a PNG there and returns the path.
Numbers drawn come from the statistics tables (dimensional.py, response_style.py); the
Bland-Altman plot only arranges the pairs (mean, difference, bias +- 1.96 SD).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .figures import pyplot, save_png as _save

EMOTION_ORDER = [
    "anger", "angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "calm", "contempt", "confusion",
]
LOA_MULTIPLIER = 1.96
SCALE_MIDPOINT = 5.0


def _ordered(labels) -> list[str]:
    labels = {str(v) for v in labels}
    return [e for e in EMOTION_ORDER if e in labels] + sorted(labels - set(EMOTION_ORDER))


def _colours(labels: list[str]) -> dict[str, tuple]:
    plt = pyplot()
    cmap = plt.get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _empty(ax, message: str = "no data") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def bland_altman_png(pairs: pd.DataFrame, title: str, path: Path) -> Path:
    """Bland-Altman plot: mean of (model, human mean) vs difference model - human, coloured by
    intended emotion, with the bias and the 95 % limits of agreement (bias +- 1.96 SD)."""
    plt = pyplot()
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
    plt = pyplot()
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


def strength_arousal_order_png(per_emotion_means: pd.DataFrame, title: str, path: Path) -> Path:
    """Valence strength |valence - 5| (x) vs arousal (y) per intended emotion, one marker set
    per rater type (humans vs model), points labelled with the emotion, and an arrow from the
    humans' point to each model's point for the same emotion. (Not Tae et al.'s strength
    inversion: that is strength_inversion_png.)"""
    plt = pyplot()
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
    plt = pyplot()
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


def strength_inversion_png(dimensional: pd.DataFrame, model_families: dict[str, str], title: str,
                           path: Path) -> Path:
    """Tae et al.'s Figure 3: each model's valence r (x) vs arousal r (y) with the mean human
    rating (dimensional_agreement pearson_r, subset 'all'), families ({model: family}) coloured apart."""
    plt = pyplot()

    r = dimensional[(dimensional["measure"] == "pearson_r") & (dimensional["subset_kind"] == "all")]
    wide = r.pivot_table(index=["model", "model_version"], columns="dimension", values="estimate", aggfunc="mean")
    fig, ax = plt.subplots(figsize=(6, 5.5))
    if not {"valence", "arousal"} <= set(wide.columns) or wide[["valence", "arousal"]].dropna().empty:
        _empty(ax)
    else:
        wide = wide[["valence", "arousal"]].dropna().reset_index()
        colours = {"fer": "tab:red", "vlm": "tab:blue", "clip": "tab:green"}
        for row in wide.itertuples(index=False):
            family = model_families.get(row.model, "other")
            ax.scatter(row.valence, row.arousal, color=colours.get(family, "tab:grey"), s=45, zorder=3)
            ax.annotate(f"{row.model} {row.model_version} ({family})", (row.valence, row.arousal),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel("valence r with the mean human rating")
        ax.set_ylabel("arousal r with the mean human rating")
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


# --------------------------------------------------------------------------- ratio forest plot

def ratio_forest_rows(tests: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """What the ratio forest plot draws, one row per test of stats.misclassification_tests.

    Whiskers and marker come from ONE interval: the row's Katz log interval (cluster-aware,
    on effective counts, where identities repeat: the row's `inference`) widened to the
    Bonferroni level 1 - alpha / m of the row's family (m = family_m), i.e. its half-width on
    the log scale times z(1 - alpha / 2m) / z(1 - alpha / 2). The marker is filled when that
    interval excludes 1, so a drawn whisker never contradicts the drawn significance. A ratio
    with a zero lower rate (n vs 0 errors) gets its one-sided score bound [low, inf) at the same
    level, drawn as an arrow from low; rows without a ratio are kept, with `note` saying why.
    """
    from scipy.stats import norm
    frame = tests.reset_index(drop=True)
    m = pd.to_numeric(frame.get("family_m"), errors="coerce").fillna(1).clip(lower=1).to_numpy(float)
    est = pd.to_numeric(frame["estimate"], errors="coerce").to_numpy(float)
    low = pd.to_numeric(frame["ci_low"], errors="coerce").to_numpy(float)
    high = pd.to_numeric(frame["ci_high"], errors="coerce").to_numpy(float)
    widen = norm.ppf(1 - alpha / (2 * m)) / norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = (np.log(low) + np.log(high)) / 2  # = ln ratio for the Katz interval
        half = (np.log(high) - np.log(low)) / 2 * widen
    out = pd.DataFrame({
        # the model only where the plot holds several: a slice's plot would repeat it on every row
        "label": [" / ".join(str(x) for x in parts) for parts in zip(
            *[frame[c] for c in ("model", "subset") if c in frame and (c == "subset" or frame[c].nunique() > 1)])],
        "estimate": est, "adj_low": np.exp(centre - half), "adj_high": np.exp(centre + half), "m": m.astype(int),
    })
    one_sided = np.isfinite(low) & np.isinf(high)
    for i in np.flatnonzero(one_sided):  # a zero lower rate: the score bound at level 1 - alpha / m
        out.at[i, "adj_low"], out.at[i, "adj_high"] = _zero_count_bound(frame.iloc[i], alpha / m[i])
    out["significant"] = (out["adj_low"] > 1) | (out["adj_high"] < 1)
    counts = frame[["count_a", "count_b"]] if {"count_a", "count_b"} <= set(frame.columns) else None
    notes = []
    for i in range(len(frame)):
        if one_sided[i]:
            notes.append(f"{int(counts.iloc[i]['count_a'])} vs 0 errors: ratio >= {out.at[i, 'adj_low']:.2f}")
        elif np.isfinite(out.at[i, "adj_low"]):
            notes.append("")
        elif counts is not None and counts.iloc[i]["count_a"] == 0 and counts.iloc[i]["count_b"] == 0:
            notes.append("no such error in either group")
        else:
            notes.append("no interval (a count is 0)")
    out["note"] = notes
    # which interval each row draws: clustered by identity (Rao-Scott) or images independent
    out["inference"] = frame["inference"].astype(str).to_numpy() if "inference" in frame else ""
    return out


def _zero_count_bound(row: pd.Series, alpha: float) -> tuple[float, float]:
    """stats.misclassification_tests' one-sided score bound of a row, at level 1 - alpha."""
    from dagster_project.analysis.clustered import CLUSTER_METHOD, group_cell, zero_count_ratio_bound
    cells = [group_cell(row[f"count_{g}"], row[f"n_{g}"], row.get(f"n_clusters_{g}"), row.get(f"design_effect_{g}"))
             for g in ("a", "b")]
    return zero_count_ratio_bound(*cells, clustered=row.get("inference") == CLUSTER_METHOD, alpha=alpha)


def ratio_forest_axes(rows: pd.DataFrame, ax, alpha: float = 0.05) -> None:
    """Draw `ratio_forest_rows` on `ax`: log x-axis, null line at 1."""
    y = np.arange(len(rows))[::-1]
    low_finite = rows["adj_low"].notna().to_numpy() & np.isfinite(rows["adj_low"].to_numpy(float))
    one_sided = low_finite & np.isinf(rows["adj_high"].to_numpy(float))
    drawn = low_finite & ~one_sided
    est = rows["estimate"].to_numpy(float)
    err = [est - rows["adj_low"].to_numpy(float), rows["adj_high"].to_numpy(float) - est]
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    if drawn.any():
        ax.errorbar(est[drawn], y[drawn], xerr=[e[drawn] for e in err], fmt="none", ecolor="grey", capsize=3)
    significant = rows["significant"].to_numpy(bool) & drawn
    ax.scatter(est[significant], y[significant], color="tab:red", zorder=3,
               label=f"Bonferroni {int(100 * (1 - alpha))} % interval (level 1 - alpha/m) excludes 1")
    plain = ~significant & drawn
    ax.scatter(est[plain], y[plain], facecolors="white", edgecolors="grey", zorder=3, label="interval includes 1")
    finite = np.concatenate([rows["adj_low"].to_numpy(float)[low_finite], rows["adj_high"].to_numpy(float)[drawn],
                             [0.5, 2.0]])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    ax.set_xlim(finite.min() / 1.5, finite.max() * 1.5)
    for yi, bound, significant_bound, note in zip(y[one_sided], rows["adj_low"].to_numpy(float)[one_sided],
                                                  rows["significant"].to_numpy(bool)[one_sided],
                                                  rows["note"].to_numpy()[one_sided]):
        # [bound, inf): a line from the bound to the right edge, an arrow head, the counts
        ax.plot([bound, finite.max() * 1.5], [yi, yi], color="grey")
        ax.scatter([bound], [yi], marker=">", color="tab:red" if significant_bound else "grey", zorder=3)
        ax.annotate(note, (bound, yi), xytext=(6, 4), textcoords="offset points", fontsize=7, color="grey")
    for yi, note in zip(y[~low_finite], rows["note"].to_numpy()[~low_finite]):
        ax.annotate(note, (1.0, yi), xytext=(6, 0), textcoords="offset points", va="center", fontsize=7, color="grey")
        ax.scatter([1.0], [yi], marker="x", color="grey", zorder=3)
    ax.set_yticks(y, rows["label"], fontsize=7)
    methods = rows["inference"] if "inference" in rows else pd.Series("", index=rows.index)
    clustered = int((methods == "rao_scott_identity").sum())
    said = (f"\n{clustered} of {len(rows)} intervals count people, not images (identities repeat: Rao-Scott "
            "design effect)" if clustered else
            "\nimages independent: no identity repeats" if (methods == "naive_independent").all() else "")
    ax.set_xlabel("error-rate ratio, higher / lower group (log scale; 1 = no difference)" + said)
    ax.legend(fontsize=7, loc="best")


def without_small_groups(tests: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows whose groups both reach min_cell_n (below_min_n false), and how many were left out."""
    small = tests["below_min_n"].fillna(False).astype(bool) if "below_min_n" in tests else pd.Series(False, tests.index)
    return tests[~small], int(small.sum())


def ratio_forest_png(tests: pd.DataFrame, title: str, path: Path, alpha: float = 0.05) -> Path:
    """Forest plot of stats.misclassification_tests rate ratios (see ratio_forest_rows). Pairs
    with a group below min_cell_n (below_min_n) are not drawn -- a 2-image group would fill the
    plot with unreadable ratios -- and the title says how many were left out."""
    plt = pyplot()
    drawable, small = without_small_groups(tests)
    rows = ratio_forest_rows(drawable, alpha)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.3 * max(len(rows), 1)))
    if rows.empty:
        _empty(ax)
    else:
        ratio_forest_axes(rows, ax, alpha)
    note = f"\n{small} pair(s) with a group below min_cell_n not drawn (see the table)" if small else ""
    ax.set_title(title + note, fontsize=8)
    return _save(fig, path)


__all__ = [
    "adjusted_forest_png", "bias_bars_png", "bland_altman_png", "ratio_forest_axes", "ratio_forest_png",
    "ratio_forest_rows", "strength_arousal_order_png", "without_small_groups", "strength_inversion_png",
]
