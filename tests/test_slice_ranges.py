"""A refresh of many slices runs as partition ranges (one run each, BackfillPolicy.single_run):
`slice_ranges` must cover exactly the requested slices -- a range that also covered a slice
without answers would mark it materialized and write nothing for it -- with few runs."""

from __future__ import annotations

import random

import dagster as dg

from dagster_project.defs.partitions import DATASET_DIMENSION, MODEL_DIMENSION, MODEL_PARTITIONS_NAME, slice_ranges

DATASETS = ["cfd", "london", "radiate", "tarr"]
MODEL_KEYS = ["z@1", "a@2", "m@3", "b@1", "a@1"]  # insertion order, not sorted: the dimension's order


def _definition() -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({MODEL_DIMENSION: dg.DynamicPartitionsDefinition(name=MODEL_PARTITIONS_NAME),
                                         DATASET_DIMENSION: dg.StaticPartitionsDefinition(DATASETS)})


def _key(model: str, dataset: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({MODEL_DIMENSION: model, DATASET_DIMENSION: dataset})


def _covered(ranges: list[dg.PartitionKeyRange], instance: dg.DagsterInstance) -> list[str]:
    definition = _definition()
    return [key for key_range in ranges
            for key in definition.get_partition_keys_in_range(key_range, dynamic_partitions_store=instance)]


def test_ranges_cover_exactly_the_requested_slices() -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(MODEL_PARTITIONS_NAME, MODEL_KEYS)
        rng = random.Random(7)
        for _ in range(300):
            chosen = [_key(m, d) for m in MODEL_KEYS for d in DATASETS if rng.random() < 0.6]
            if not chosen:
                continue
            covered = _covered(slice_ranges(chosen, MODEL_KEYS, DATASETS), instance)
            assert sorted(covered) == sorted(map(str, chosen)), chosen  # each once, nothing else


def test_a_full_grid_is_one_run_and_versions_of_one_dataset_are_one_run() -> None:
    everything = [_key(m, d) for m in MODEL_KEYS for d in DATASETS]
    assert len(slice_ranges(everything, MODEL_KEYS, DATASETS)) == 1
    three_versions = [_key(m, "london") for m in ("a@2", "m@3", "b@1")]  # consecutive in the dimension
    assert slice_ranges(three_versions, MODEL_KEYS, DATASETS) == [
        dg.PartitionKeyRange(str(_key("a@2", "london")), str(_key("b@1", "london")))]
    # z@1 and m@3 are not next to each other (a@2 lies between): two runs, never one over a@2
    assert len(slice_ranges([_key("z@1", "cfd"), _key("m@3", "cfd")], MODEL_KEYS, DATASETS)) == 2
