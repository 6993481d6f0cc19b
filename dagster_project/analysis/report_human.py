"""The report's human-baseline section: marts.human_category_agreement as one row per model
with the human value of the same images beside it, and what each measure's numbers mean."""

from __future__ import annotations

import pandas as pd

HUMAN_KEYS = ["dataset", "grouping", "group_value", "true_emotion", "measure", "human_sample", "perceived_emotion"]


def _three_places(value: object) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):.3f}"


def human_baseline_table(agreement: pd.DataFrame) -> pd.DataFrame:
    """One row per model version x protocol x cell of marts.human_category_agreement with the
    human value of the same images beside it (a cell no model answered keeps its human row)."""
    if agreement.empty:
        return pd.DataFrame()
    human = agreement[agreement["reader"] == "human"][[*HUMAN_KEYS, "value", "n_images", "value_scale"]]
    models = agreement[agreement["reader"] == "model"][[*HUMAN_KEYS, "model", "model_version", "protocol",
                                                         "value", "n_images"]]
    joined = human.rename(columns={"value": "human", "n_images": "human images"}).merge(
        models.rename(columns={"value": "model value", "n_images": "model answered"}), on=HUMAN_KEYS, how="left")
    joined["human"] = joined["human"].map(_three_places)
    joined["model value"] = joined["model value"].map(_three_places)
    order = [*HUMAN_KEYS, "human", "human images", "model", "model_version", "protocol", "model value",
             "model answered", "value_scale"]
    return joined[order].sort_values(HUMAN_KEYS[:4] + ["model"], na_position="first").reset_index(drop=True)


def human_meanings(agreement: pd.DataFrame) -> list[tuple[str, str]]:
    """(measure, what its human and model numbers mean, in the mart's words: its first row)."""
    if agreement.empty:
        return []
    first = agreement.sort_values(["measure", "reader"], ascending=[True, False]).drop_duplicates("measure")
    return list(zip(first["measure"].astype(str), first["meaning"].astype(str)))
