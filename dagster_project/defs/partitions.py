"""Partitions: model version (dynamic, added at run time) x dataset (from benchmark.yaml).

One partition of `model_dataset_partitions` is one evaluated slice (model, model_version,
dataset) all the way through: raw answers, dbt slice models, statistics and figures.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import dagster as dg
import pandas as pd

from dagster_project.settings import benchmark_config
from inference.config import BenchmarkConfig

MODEL_PARTITIONS_NAME = "model_version"
# The dimensions as the UI names them (and README): "<model>@<version>" x dataset.
MODEL_DIMENSION = MODEL_PARTITIONS_NAME
DATASET_DIMENSION = "dataset"

model_partitions = dg.DynamicPartitionsDefinition(name=MODEL_PARTITIONS_NAME)
dataset_partitions = dg.StaticPartitionsDefinition(sorted(benchmark_config().datasets))
model_dataset_partitions = dg.MultiPartitionsDefinition(
    {MODEL_DIMENSION: model_partitions, DATASET_DIMENSION: dataset_partitions}
)

# Every asset of a slice's refresh: a backfill (UI, `fer-warehouse demo`) of many slices is one
# run, whose dbt invocation, statistics and figures each handle every slice of it at once.
SINGLE_RUN = dg.BackfillPolicy.single_run()


def slice_partition(model_key: str, dataset: str) -> dg.MultiPartitionKey:
    """The partition of model version `model_key` ("<model>@<version>") on `dataset`."""
    return dg.MultiPartitionKey({MODEL_DIMENSION: model_key, DATASET_DIMENSION: dataset})


@dataclass(frozen=True)
class SliceKey:
    """The warehouse rows one partition owns (the columns every slice table carries)."""

    model: str
    model_version: str
    dataset: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def slice_frame(*slice_keys: SliceKey) -> pd.DataFrame:
    """The slices as rows (model, model_version, dataset): what a query of many slices joins on."""
    return pd.DataFrame([slice_key.as_dict() for slice_key in slice_keys],
                        columns=["model", "model_version", "dataset"])


def slice_of(partition_key: dg.MultiPartitionKey | str, cfg: BenchmarkConfig) -> SliceKey:
    """The slice of a model version x dataset partition key."""
    if not isinstance(partition_key, dg.MultiPartitionKey):  # e.g. "dataset|model@version"
        partition_key = model_dataset_partitions.get_partition_key_from_str(partition_key)
    by_dimension = partition_key.keys_by_dimension
    model = cfg.model_for_partition(by_dimension[MODEL_DIMENSION])
    return SliceKey(model=model.name, model_version=model.version, dataset=by_dimension[DATASET_DIMENSION])


def slices_of(partition_keys: Sequence[dg.MultiPartitionKey | str], cfg: BenchmarkConfig) -> list[SliceKey]:
    """The slices of a run's partitions (`context.partition_keys`: one, or a backfill's range)."""
    return [slice_of(key, cfg) for key in partition_keys]


def slice_ranges(slices: Sequence[dg.MultiPartitionKey], model_keys: Sequence[str],
                 dataset_keys: Sequence[str] | None = None) -> list[dg.PartitionKeyRange]:
    """`slices` as few partition-key ranges (rectangles: datasets x consecutive model versions,
    in the order `model_keys` of the dynamic dimension) as this greedy grouping finds, each
    covering exactly slices of `slices`: one run can refresh each range (BackfillPolicy.single_run).

    Per dataset, its model versions split into runs of consecutive keys; datasets next to each
    other (in the static dimension's order, `dataset_keys`) with the same runs share one range."""
    position = {key: i for i, key in enumerate(model_keys)}
    wanted: dict[str, list[str]] = {}
    for key in slices:
        by_dimension = key.keys_by_dimension
        wanted.setdefault(by_dimension[DATASET_DIMENSION], []).append(by_dimension[MODEL_DIMENSION])
    runs_by_dataset = {dataset: _consecutive_runs(sorted(set(models), key=position.__getitem__), position)
                       for dataset, models in wanted.items()}
    ranges: list[dg.PartitionKeyRange] = []
    ordered = dataset_keys if dataset_keys is not None else dataset_partitions.get_partition_keys()
    datasets = [d for d in ordered if d in runs_by_dataset]
    start = 0
    while start < len(datasets):
        end = start
        while end + 1 < len(datasets) and runs_by_dataset[datasets[end + 1]] == runs_by_dataset[datasets[start]]:
            end += 1
        for first, last in runs_by_dataset[datasets[start]]:
            ranges.append(dg.PartitionKeyRange(str(slice_partition(first, datasets[start])),
                                               str(slice_partition(last, datasets[end]))))
        start = end + 1
    return ranges


def _consecutive_runs(models: list[str], position: dict[str, int]) -> list[tuple[str, str]]:
    """(first, last) of each run of consecutive positions in `models` (sorted by position)."""
    runs: list[tuple[str, str]] = []
    for model in models:
        if runs and position[model] == position[runs[-1][1]] + 1:
            runs[-1] = (runs[-1][0], model)
        else:
            runs.append((model, model))
    return runs


def configured_model_keys(cfg: BenchmarkConfig) -> list[str]:
    """Partition keys of the model versions pinned in the config."""
    return sorted(model.partition_key for model in cfg.models.values())


def unconfigured_model_keys(keys: set[str] | list[str], cfg: BenchmarkConfig) -> dict[str, str]:
    """Model-version partition keys that name no configured model (or no version), with why."""
    stray = {}
    for key in sorted(keys):
        name, at, version = key.partition("@")
        if name not in cfg.models:
            stray[key] = f"no model named {name!r} under 'models:' in {cfg.path}; keys read '<model>@<version>'"
        elif not at or not version:
            stray[key] = f"no version after '@' (keys read '{name}@<version>')"
    return stray


def register_configured_models(instance: dg.DagsterInstance, cfg: BenchmarkConfig) -> list[str]:
    """Add the configured model versions as partitions; return the keys that were new."""
    known = set(instance.get_dynamic_partitions(MODEL_PARTITIONS_NAME))
    new = [key for key in configured_model_keys(cfg) if key not in known]
    if new:
        instance.add_dynamic_partitions(MODEL_PARTITIONS_NAME, new)
    return new
