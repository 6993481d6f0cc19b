"""The report's first page: per slice (model version x dataset x protocol) what a reader asks first.

1. The largest disparities that survive the multiplicity correction, with their interval, n and
   family: stats.worst_subgroups where the warehouse has it (every pairwise error-rate test of
   the slice in one Benjamini-Hochberg family, ranked by difference), else the significant rows
   of stats.error_rate_ztests (Holm within each recorded family). A slice where nothing survives
   says so, with how many tests were made.
2. Accuracy by group (emotions pooled, Wilson 95 %), with people's accuracy on the same images
   beside the model's where the warehouse holds a human baseline (marts.human_category_agreement:
   the share of raters choosing the intended expression; or group_accuracy rows of HUMAN_MODELS);
   groups below min_cell_n are left out of the table and named in a note.
3. What changed since the previous version of the model (version order from raw.model_runs):
   the overall accuracy of both and the bias regression gate's verdict on every disparity
   (analysis/regression_gate.py, the same comparison as the asset check).

Pure: frames in, frames and sentences out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dagster_project.analysis.inputs import slice_positions
from dagster_project.analysis.regression_gate import disparities as gap_disparities
from dagster_project.analysis.regression_gate import gate_from_gaps, regression_gate
from dagster_project.analysis.report_format import fmt, interval, p_text

SLICE_KEYS = ["model", "model_version", "dataset", "protocol"]
HUMAN_MODELS = ("human", "humans")  # group_accuracy rows of people answering the same images
TOP_DISPARITIES = 5
VERSION_ORDER = "raw.version_order"  # model, model_version, first_evaluated (reporting.py)


@dataclass(frozen=True)
class SliceSummary:
    title: str
    accuracy: str  # overall accuracy [CI] (n)
    disparities: pd.DataFrame
    disparity_note: str
    groups: pd.DataFrame
    small_groups_note: str
    change_note: str
    changes: pd.DataFrame


class SliceTables(Mapping[str, pd.DataFrame]):
    """The report's tables, and a table's rows of one slice (SLICE_KEYS), found through one
    grouping of the table made on first use: the summaries ask for every slice, and a scan of
    the whole table per slice grew with the square of the slices."""

    def __init__(self, tables: Mapping[str, pd.DataFrame]) -> None:
        self._tables = tables
        self._positions: dict[str, dict[tuple, np.ndarray]] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self._tables[name]

    def __iter__(self):
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def of_slice(self, name: str, key: tuple) -> pd.DataFrame:
        """`name`'s rows of the slice `key` (values compared as text), in table order with
        their index; no frame (no columns) when the table is missing, empty or has no slice keys."""
        frame = self._tables.get(name)
        if frame is None or frame.empty or not set(SLICE_KEYS) <= set(frame.columns):
            return pd.DataFrame()
        if name not in self._positions:
            self._positions[name] = slice_positions(frame[SLICE_KEYS].astype(str), SLICE_KEYS)
        rows = self._positions[name].get(tuple(str(value) for value in key))
        return frame.iloc[rows] if rows is not None else frame.iloc[0:0]


def _worst_rows(rows: pd.DataFrame) -> pd.DataFrame:
    survivors = rows[rows["survives_fdr"].fillna(False).astype(bool)].sort_values("rank").head(TOP_DISPARITIES)
    return pd.DataFrame({
        "worse vs better group": survivors["subset"], "grouping": survivors["subset_kind"],
        "true emotion": survivors["true_emotion"],
        "error rates": [f"{fmt(a)} vs {fmt(b)}" for a, b in zip(survivors["error_rate_a"], survivors["error_rate_b"])],
        "difference [95 % CI]": [interval(r.estimate, r.ci_low, r.ci_high) for r in survivors.itertuples()],
        "n": survivors["n"], "p adjusted": survivors["p_adjusted"].map(p_text),
        "family (m)": [f"{r.correction} over the slice (m={r.family_m})" for r in survivors.itertuples()],
        "inference": survivors["inference"],
    })


def _ztest_rows(rows: pd.DataFrame, alpha: float) -> pd.DataFrame:
    adjusted = pd.to_numeric(rows["p_adjusted"], errors="coerce")
    small = rows["below_min_n"].fillna(False).astype(bool)
    hits = rows[(adjusted < alpha) & ~small].assign(_size=lambda f: f["difference"].abs())
    hits = hits.sort_values("_size", ascending=False).head(TOP_DISPARITIES)
    return pd.DataFrame({
        "groups (a vs b)": hits["group_a"] + " vs " + hits["group_b"], "grouping": hits["grouping"],
        "true emotion": hits["true_emotion"],
        "error rates": [f"{fmt(a)} vs {fmt(b)}" for a, b in zip(hits["error_rate_a"], hits["error_rate_b"])],
        "difference [95 % CI]": [interval(r.difference, r.ci_low, r.ci_high) for r in hits.itertuples()],
        "n": [f"{int(a)} + {int(b)}" for a, b in zip(hits["n_a"], hits["n_b"])],
        "p adjusted": hits["p_adjusted"].map(p_text),
        "family (m)": [f"{r.correction}: {r.family} (m={r.family_m})" for r in hits.itertuples()],
    })


def disparities(tables: SliceTables, key: tuple, alpha: float) -> tuple[pd.DataFrame, str]:
    """The slice's largest surviving disparities and a sentence saying where they come from."""
    worst = tables.of_slice("stats.worst_subgroups", key)
    if "stats.worst_subgroups" in tables:
        if worst.empty:
            return pd.DataFrame(), "no pairwise error-rate test in this slice (stats.worst_subgroups)"
        shown = _worst_rows(worst)
        m = int(worst["family_m"].max()) if worst["family_m"].notna().any() else 0
        source = (f"stats.worst_subgroups: every pairwise error-rate test of the slice, one Benjamini-Hochberg "
                  f"family (m={m}), alpha {alpha}; largest difference first")
        return shown, (source if len(shown) else f"no disparity survives the correction ({source})")
    ztests = tables.of_slice("stats.error_rate_ztests", key)
    if ztests.empty:
        return pd.DataFrame(), "no error-rate tests for this slice yet (stats.error_rate_ztests)"
    shown = _ztest_rows(ztests, alpha)
    source = (f"stats.error_rate_ztests: {int(ztests['p_value'].notna().sum())} tests, adjusted within each "
              f"recorded family; p adjusted < {alpha} and both groups >= min_cell_n; largest difference first")
    return shown, (source if len(shown) else f"no disparity survives the correction ({source})")


def _people(tables: Mapping[str, pd.DataFrame], dataset: str) -> dict[tuple[str, str], str]:
    """People on the same images, per (grouping, group): the human baseline mart's share of
    raters choosing the intended expression (marts.human_category_agreement, emotions pooled),
    or group_accuracy rows of HUMAN_MODELS; text with its n."""
    people: dict[tuple[str, str], str] = {}
    accuracy = tables.get("marts.group_accuracy", pd.DataFrame())
    if len(accuracy):
        humans = accuracy[accuracy["model"].astype(str).str.lower().isin(HUMAN_MODELS)
                          & (accuracy["dataset"] == dataset) & (accuracy["true_emotion"] == "all")]
        people.update({(h.grouping, h.group_value): f"{interval(h.accuracy, h.ci_low, h.ci_high)} ({int(h.n)})"
                       for h in humans.itertuples()})
    baseline = tables.get("marts.human_category_agreement", pd.DataFrame())
    if len(baseline):
        shares = baseline[(baseline["reader"] == "human") & (baseline["measure"] == "share_choosing_intended")
                          & (baseline["dataset"] == dataset) & (baseline["true_emotion"] == "all")]
        people.update({(h.grouping, h.group_value): f"{fmt(h.value)} ({int(h.n_images)}; share of raters "
                       "choosing the intended expression)" for h in shares.itertuples()})
    return people


def group_accuracy(tables: SliceTables, key: tuple, min_cell_n: int) -> tuple[pd.DataFrame, str]:
    """Accuracy per group (emotions pooled) of the slice, people beside it; small groups -> note."""
    rows = tables.of_slice("marts.group_accuracy", key)
    rows = rows[(rows["grouping"] != "all") & (rows["true_emotion"] == "all")].sort_values(["grouping", "group_value"])
    small = rows[rows["n"] < min_cell_n]
    shown = rows[rows["n"] >= min_cell_n]
    table = pd.DataFrame({
        "grouping": shown["grouping"], "group": shown["group_value"], "n": shown["n"],
        "accuracy [95 % CI]": [interval(r.accuracy, r.ci_low, r.ci_high) for r in shown.itertuples()],
    })
    people = _people(tables, key[2])
    if people:
        table["people, same images [95 % CI] (n)"] = [people.get((g, v), "")
                                                      for g, v in zip(shown["grouping"], shown["group_value"])]
    note = ""
    if len(small):
        listed = ", ".join(f"{g} {v} (n={int(n)})" for g, v, n in zip(small["grouping"], small["group_value"], small["n"]))
        note = f"{len(small)} group(s) below min_cell_n = {min_cell_n} not shown (too few images to read): {listed}"
    return table.reset_index(drop=True), note


def previous_version(order: pd.DataFrame | None, model: str, version: str) -> str | None:
    """The version of `model` first evaluated just before `version`, if any."""
    if order is None or order.empty:
        return None
    versions = order[order["model"] == model].sort_values(["first_evaluated", "model_version"])["model_version"].tolist()
    if version not in versions or versions.index(version) == 0:
        return None
    return versions[versions.index(version) - 1]


def changes(tables: SliceTables, key: tuple, min_cell_n: int, alpha: float,
            correction: str = "holm", gaps: Mapping[str, pd.DataFrame] | None = None) -> tuple[str, pd.DataFrame]:
    """What changed since the model's previous version: overall accuracy and the regression gate.
    `gaps`: regression_gate.disparities of the model's versions on this dataset and protocol,
    by version, when already computed (slice_summaries computes every version's once)."""
    model, version, dataset, protocol = key
    previous = previous_version(tables.get(VERSION_ORDER), model, version)
    if previous is None:
        return "first evaluated version of this model: nothing to compare with", pd.DataFrame()
    both = _versions_of(tables, key, (version, previous))
    overall = both[(both["grouping"] == "all") & (both["true_emotion"] == "all")].set_index("model_version")
    if previous not in overall.index:
        return f"previous version {previous} has no results on this dataset and protocol", pd.DataFrame()
    old, new = overall.loc[previous], overall.loc[version]
    if gaps is None:
        gate = regression_gate(both, model=model, new_version=version, previous_version=previous,
                               min_n=min_cell_n, alpha=alpha, correction=correction)
    else:
        pair = [gaps[v] for v in (version, previous) if v in gaps]
        gate = gate_from_gaps(pd.concat(pair) if pair else pd.DataFrame(), new_version=version, previous_version=previous,
                              min_n=min_cell_n, alpha=alpha, correction=correction)
    note = (f"since {previous}: accuracy {interval(old.accuracy, old.ci_low, old.ci_high)} -> "
            f"{interval(new.accuracy, new.ci_low, new.ci_high)}; regression gate: {gate.summary()}")
    offenders = gate.offenders
    table = pd.DataFrame({
        "groups (a vs b)": offenders["group_a"] + " vs " + offenders["group_b"], "grouping": offenders["grouping"],
        "true emotion": offenders["true_emotion"],
        "gap before [CI]": [interval(r.gap_previous, r.ci_low_previous, r.ci_high_previous) for r in offenders.itertuples()],
        "gap now [CI]": [interval(r.gap_new, r.ci_low_new, r.ci_high_new) for r in offenders.itertuples()],
        "p adjusted": offenders["p_adjusted"].map(p_text),
    }) if len(offenders) else pd.DataFrame()
    return note, table


def _versions_of(tables: SliceTables, key: tuple, versions: tuple[str, ...]) -> pd.DataFrame:
    """marts.group_accuracy's rows of the slice `key`'s model, dataset and protocol at `versions`."""
    model, _, dataset, protocol = key
    parts = [tables.of_slice("marts.group_accuracy", (model, version, dataset, protocol)) for version in versions]
    found = [part for part in parts if len(part)]
    return pd.concat(found) if found else tables["marts.group_accuracy"].iloc[0:0]


def slice_summaries(tables: Mapping[str, pd.DataFrame], *, alpha: float, min_cell_n: int,
                    gate_correction: str = "holm") -> list[SliceSummary]:
    """One SliceSummary per model version x dataset x protocol of marts.group_accuracy (people
    excluded: they are shown beside the models)."""
    accuracy = tables.get("marts.group_accuracy", pd.DataFrame())
    if accuracy.empty:
        return []
    models_only = accuracy[~accuracy["model"].astype(str).str.lower().isin(HUMAN_MODELS)]
    pooled = models_only[(models_only["grouping"] == "all")
                         & (models_only["true_emotion"] == "all")].sort_values(SLICE_KEYS)
    # Every version's disparities once (each is compared with the version before and after it),
    # found by version: a scan of every version's per slice grew with the square of the versions.
    gaps_of: dict[tuple, dict[str, pd.DataFrame]] = {}
    for (model, dataset, protocol, version), rows in gap_disparities(models_only).groupby(
            ["model", "dataset", "protocol", "model_version"], sort=False):
        gaps_of.setdefault((model, dataset, protocol), {})[version] = rows
    sliced = SliceTables(tables)
    summaries = []
    for row in pooled.itertuples():
        key = (row.model, row.model_version, row.dataset, row.protocol)
        shown, note = disparities(sliced, key, alpha)
        groups, small = group_accuracy(sliced, key, min_cell_n)
        change_note, changed = changes(sliced, key, min_cell_n, alpha, gate_correction,
                                       gaps_of.get((row.model, row.dataset, row.protocol), {}))
        summaries.append(SliceSummary(
            title=f"{row.model} {row.model_version} on {row.dataset} ({row.protocol})",
            accuracy=f"{interval(row.accuracy, row.ci_low, row.ci_high)} over {int(row.n)} answered images "
                     f"(of {int(row.n_images)})",
            disparities=shown, disparity_note=note, groups=groups, small_groups_note=small,
            change_note=change_note, changes=changed,
        ))
    return summaries
