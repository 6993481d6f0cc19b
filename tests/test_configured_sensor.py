"""`configured_model_versions`: a version pinned in benchmark.yaml is evaluated on each dataset it
covers until it has answers there, whoever registered its partition first (`fer-warehouse ui`
does, before the daemon starts); a hand-added version that is not configured is never evaluated."""

from __future__ import annotations

import dagster as dg

from dagster_project.orchestration import load_definitions
from dagster_project.defs.automation import unevaluated_slices
from dagster_project.defs.inference_assets import PREDICTIONS
from dagster_project.defs.ingestion import DATASET_IMAGES
from dagster_project.defs.partitions import (MODEL_PARTITIONS_NAME, dataset_partitions,
                                             register_configured_models, slice_partition)
from dagster_project.settings import benchmark_config


def _ingested(instance: dg.DagsterInstance) -> None:
    for dataset in dataset_partitions.get_partition_keys():
        instance.report_runless_asset_event(dg.AssetMaterialization(DATASET_IMAGES, partition=dataset))


def _tick(instance: dg.DagsterInstance):
    defs = load_definitions()
    sensor = defs.resolve_sensor_def("configured_model_versions")
    # The daemon resolves partition keys against the instance; in-process we say which one.
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))


def test_versions_registered_before_the_first_tick_are_still_evaluated() -> None:
    cfg = benchmark_config()
    expected = sorted(slice_partition(m, d) for m, d in unevaluated_slices(cfg, dataset_partitions.get_partition_keys(), set()))
    with dg.instance_for_test() as instance:
        _ingested(instance)
        assert register_configured_models(instance, cfg)  # what `fer-warehouse ui` does first
        first = _tick(instance)
        assert sorted(r.partition_key for r in first.run_requests) == expected
        assert {r.job_name for r in first.run_requests} == {"evaluate_model_on_dataset"}
        # One slice answered: the next tick asks for the others only.
        done = first.run_requests[0].partition_key
        instance.report_runless_asset_event(dg.AssetMaterialization(PREDICTIONS, partition=done))
        second = _tick(instance)
        assert sorted(r.partition_key for r in second.run_requests) == [k for k in expected if k != done]


def test_a_hand_added_unconfigured_version_is_never_evaluated() -> None:
    cfg = benchmark_config()
    name = next(iter(cfg.models))
    stray = f"{name}@hand-added-version"
    with dg.instance_for_test() as instance:
        _ingested(instance)
        register_configured_models(instance, cfg)
        instance.add_dynamic_partitions(MODEL_PARTITIONS_NAME, [stray])
        result = _tick(instance)
        assert not [r for r in result.run_requests if r.partition_key.startswith(stray)]


def test_every_slice_answered_skips_saying_so() -> None:
    cfg = benchmark_config()
    with dg.instance_for_test() as instance:
        _ingested(instance)
        register_configured_models(instance, cfg)
        for model, dataset in unevaluated_slices(cfg, dataset_partitions.get_partition_keys(), set()):
            instance.report_runless_asset_event(dg.AssetMaterialization(PREDICTIONS, partition=slice_partition(model, dataset)))
        result = _tick(instance)
        assert not result.run_requests and "has answers" in result.skip_message
