"""Watched models: a sensor polls each provider, and every version it has not seen becomes a
model-version partition that is evaluated on every dataset it covers, once.

The cursor (JSON) keeps, per watched model, the versions already seen and when the provider
was last polled, so a version is never requested twice and providers are polled at their own
`interval_s`. A provider that is down makes the tick skip with the reason; the daemon goes on.
"""

import json
import time
from datetime import datetime, timezone

import dagster as dg

from dagster_project.defs.automation import evaluate_job
from dagster_project.defs.inference_assets import (
    DISCOVERED_AT_TAG,
    DISCOVERED_BY_TAG,
    DISCOVERED_FROM_TAG,
)
from dagster_project.defs.partitions import MODEL_PARTITIONS_NAME, dataset_partitions, slice_partition
from dagster_project.settings import benchmark_config
from inference.config import model_partition_key
from inference.vlm.run_tags import provider_run_tags
from inference.watch import ProviderUnavailable, list_versions


def _load_cursor(raw: str | None) -> dict:
    return json.loads(raw) if raw else {}


# Providers are polled at each model's own `watch.interval_s`; the tick only looks whose turn it is.
WATCH_TICK_S = min(30, benchmark_config().automation.sensor_interval_s)


@dg.sensor(job=evaluate_job, minimum_interval_seconds=WATCH_TICK_S, default_status=dg.DefaultSensorStatus.RUNNING)
def watched_model_versions(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    cfg = benchmark_config()
    watched = {name: m for name, m in cfg.models.items() if m.watch is not None}
    if not watched:
        return dg.SkipReason("no model in benchmark.yaml has a `watch:` section")
    cursor = _load_cursor(context.cursor)
    known = set(context.instance.get_dynamic_partitions(MODEL_PARTITIONS_NAME))
    now = time.time()
    new_keys, requests, problems = [], [], []
    for name, model in sorted(watched.items()):
        state = cursor.setdefault(name, {"seen": [], "polled_at": 0.0})
        if now - state["polled_at"] < model.watch.interval_s:
            continue
        try:
            found = list_versions(model.watch, cfg.resolve)
        except ProviderUnavailable as exc:
            problems.append(f"{name}: {exc}")
            continue
        state["polled_at"] = now
        for discovered in found:
            key = model_partition_key(name, discovered.version)
            if discovered.version in state["seen"] or key in known:
                state["seen"] = sorted(set(state["seen"]) | {discovered.version})
                continue
            state["seen"] = sorted(set(state["seen"]) | {discovered.version})
            new_keys.append(key)
            tags = {
                **provider_run_tags(model),
                DISCOVERED_BY_TAG: f"sensor:{discovered.provider}",
                DISCOVERED_AT_TAG: datetime.now(timezone.utc).isoformat(timespec="seconds"),
                DISCOVERED_FROM_TAG: discovered.source,
            }
            for dataset in dataset_partitions.get_partition_keys():
                if model.covers(dataset):
                    requests.append(dg.RunRequest(
                        run_key=f"{key}|{dataset}",
                        partition_key=slice_partition(key, dataset),
                        tags=tags,
                    ))
    cursor_text = json.dumps(cursor, sort_keys=True)
    if not new_keys:
        reason = "; ".join(problems) if problems else "no new versions at the watched providers"
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor_text)
    context.log.info(f"new model versions: {new_keys}" + (f"; unavailable: {problems}" if problems else ""))
    # Added here rather than as a partitions request so the run requests below name partitions
    # that already exist wherever the tick is evaluated (daemon, UI test tick, tests).
    context.instance.add_dynamic_partitions(MODEL_PARTITIONS_NAME, new_keys)
    return dg.SensorResult(run_requests=requests, cursor=cursor_text)
