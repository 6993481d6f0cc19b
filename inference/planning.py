"""Dry run: what evaluating every configured model x dataset partition would call and cost.

Nothing is called and nothing is written: images come from the warehouse (raw.dataset_images,
read from a snapshot) when the dataset was ingested, else from the dataset's local copy.
"""

from __future__ import annotations

from typing import Any

import duckdb

from inference.config import VLM_KINDS, BenchmarkConfig, DatasetConfig
from inference.datasets.base import ImageRecord
from inference.frames import records_from_rows
from inference.pipeline import dataset_location, dataset_root
from inference.warehouse import snapshot_for_reading


def _images(bench: BenchmarkConfig, ds: DatasetConfig, cache: dict[str, list[ImageRecord]]) -> list[ImageRecord]:
    if ds.name in cache:
        return cache[ds.name]
    images: list[ImageRecord] = []
    if bench.warehouse.exists():
        with snapshot_for_reading(bench.warehouse) as snapshot:
            con = duckdb.connect(str(snapshot), read_only=True)
            try:
                has_table = con.execute(
                    "select count(*) from information_schema.tables "
                    "where table_schema = 'raw' and table_name = 'dataset_images'").fetchone()[0]
                rows = con.execute("select * from raw.dataset_images where dataset = ? order by image_id",
                                   [ds.name]).df() if has_table else None
            finally:
                con.close()
        if rows is not None and len(rows):
            location = bench.resolve(ds.location) if ds.location else bench.cache_dir
            images = records_from_rows(rows, dataset_root(ds, location))
    if not images:
        from inference.datasets import load_dataset, load_label_map

        images = list(load_dataset(ds, dataset_location(bench, ds), load_label_map()).images)
    cache[ds.name] = images
    return images


def plan_benchmark(bench: BenchmarkConfig) -> list[dict[str, Any]]:
    """One row per configured model x dataset partition: calls, projected tokens and cost."""
    from inference.models.vlm import ExternalAPIError, VLMAdapter, check_external_api_allowed

    rows: list[dict[str, Any]] = []
    cache: dict[str, list[ImageRecord]] = {}
    for model in sorted(bench.models.values(), key=lambda m: m.partition_key):
        for ds in sorted(bench.datasets.values(), key=lambda d: d.name):
            if not model.covers(ds.name):
                continue
            row: dict[str, Any] = {"model": model.partition_key, "kind": model.kind, "dataset": ds.name}
            if model.kind not in VLM_KINDS:
                row.update({"n_images": None, "expected_calls": 0, "max_calls": 0,
                            "projected_input_tokens": 0, "projected_output_tokens": 0,
                            "projected_cost_usd": 0.0,
                            "note": "imported file" if model.kind == "imported" else "local model, no API calls"})
                rows.append(row)
                continue
            adapter = VLMAdapter(model, bench.cache_dir)
            plan = adapter.plan(_images(bench, ds, cache))
            note = "external API" if plan["external_api"] else "local endpoint"
            try:
                check_external_api_allowed(model, ds, adapter.options)
            except ExternalAPIError:
                note = f"BLOCKED: set datasets.{ds.name}.allow_external_apis: true to run"
            if plan["projected_cost_usd"] is None:
                note += "; no price_per_million_tokens"
            row.update({k: plan[k] for k in ("n_images", "expected_calls", "max_calls", "projected_input_tokens",
                                             "projected_output_tokens", "projected_cost_usd", "delivery",
                                             "budget_usd")})
            for tier, cost in (plan["projected_cost_by_tier"] or {}).items():
                row[f"cost_{tier}_usd"] = cost
            if plan["budget_usd"] is not None and (plan["projected_cost_usd"] or 0.0) > plan["budget_usd"]:
                note += f"; OVER BUDGET: ~${plan['projected_cost_usd']:.2f} > budget_usd {plan['budget_usd']:g}"
            row["protocol"] = plan["protocol"]
            row["note"] = note
            rows.append(row)
    return rows


def planned_images(bench: BenchmarkConfig) -> "pd.DataFrame":
    """Every configured dataset's images as the warehouse would group them (canonical emotion,
    race and gender through the seeds as int_images_labeled; each configured grouping as the
    dbt macro unpivot_groupings: age and extra columns binned by statistics.bins, 'a*b' and
    race_gender joined by a space), one column per grouping, for `plan`."""
    import pandas as pd

    from inference.datasets import load_label_map
    from inference.datasets.labels import load_group_maps

    labels, groups = load_label_map(), load_group_maps()
    bins = bench.statistics.bin_labels()
    cache: dict[str, list[ImageRecord]] = {}
    rows = []
    for ds in sorted(bench.datasets.values(), key=lambda d: d.name):
        label_set = ds.effective_label_set
        for image in _images(bench, ds, cache):
            attributes = {**image.extra, "age": image.age,
                          "race": groups.canonical("race", label_set, image.race),
                          "gender": groups.canonical("gender", label_set, image.gender)}
            row = {"dataset": ds.name, "image_id": image.image_id, "identity": image.identity,
                   "true_emotion": labels.canonical(label_set, image.source_label)}
            for grouping in bench.statistics.groupings:
                parts = ["race", "gender"] if grouping == "race_gender" else grouping.split("*")
                values = [_attribute_value(attributes.get(part), bins.get(part)) for part in parts]
                row[grouping] = None if None in values else " ".join(values)
            rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", "image_id", "identity", "true_emotion",
                                       *bench.statistics.groupings])


def _attribute_value(value: Any, bins: list[list] | None) -> str | None:
    """An attribute as its grouping's value: its bin's label when binned, else its text."""
    if value is None or value == "":
        return None
    if bins is None:
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return next((label for low, high, label in bins if low <= number < high), None)
