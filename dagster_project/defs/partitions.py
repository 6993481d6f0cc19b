"""Partitions: model version (dynamic, added at run time) x dataset (from benchmark.yaml)."""


import dagster as dg

from dagster_project.settings import benchmark_config
from inference.config import BenchmarkConfig

MODEL_PARTITIONS_NAME = "model_version"

model_partitions = dg.DynamicPartitionsDefinition(name=MODEL_PARTITIONS_NAME)
dataset_partitions = dg.StaticPartitionsDefinition(sorted(benchmark_config().datasets))
model_dataset_partitions = dg.MultiPartitionsDefinition(
    {"model": model_partitions, "dataset": dataset_partitions}
)


def configured_model_keys(cfg: BenchmarkConfig) -> list[str]:
    """Partition keys of the model versions pinned in the config."""
    return sorted(model.partition_key for model in cfg.models.values())


def register_configured_models(instance: dg.DagsterInstance, cfg: BenchmarkConfig) -> list[str]:
    """Add the configured model versions as partitions; return the keys that were new."""
    known = set(instance.get_dynamic_partitions(MODEL_PARTITIONS_NAME))
    new = [key for key in configured_model_keys(cfg) if key not in known]
    if new:
        instance.add_dynamic_partitions(MODEL_PARTITIONS_NAME, new)
    return new
