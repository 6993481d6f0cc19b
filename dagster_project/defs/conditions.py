"""Declarative automation: when a slice's inputs change, its results follow, however the
inputs were materialized (asset page, job, backfill, sensor).

Two conditions, evaluated per partition by `default_automation_condition_sensor`
(defs/automation.py):

* `SLICE_RESULTS` on everything partitioned downstream of the raw tables (dbt slice models,
  statistics, figures) and on the per-dataset human baselines: Dagster's `eager()`, except that
  the unpartitioned dbt foundation (seeds, staging and dataset views, rebuilt by every
  ingestion with an unchanged data version) does not count as an update (otherwise one
  ingestion would refresh every slice of every dataset), and that it waits one tick after its
  inputs changed: a run that evaluated a slice gets its refresh from the run-status sensor
  `refresh_after_evaluation` within seconds, and automation is the fallback. A whole chain (marts -> stats ->
  figures) is requested in one tick, so it runs as one run per slice.
* `ACROSS_SLICES` on the unpartitioned results that compare slices: requested once the slices
  they read were updated and none of them is still in progress, so a refresh of one slice
  triggers one comparison run after it, not one per materialized step.
"""

import dagster as dg

# The dbt foundation: dbt models without the `slice` tag (dagster-dbt turns dbt tags into asset tags).
DBT_FOUNDATION = dg.AssetSelection.kind("dbt") - dg.AssetSelection.tag("slice", "")

_UPDATED = dg.AutomationCondition.any_deps_updated().ignore(DBT_FOUNDATION)

# Raw answers that landed since the previous tick: the sensor refresh_after_evaluation
# (defs/refresh_sensor.py) requests the slice's refresh within seconds of the run's success, so
# automation steps in only a tick later, when nobody has; the two never request it twice.
_JUST_UPDATED = dg.AutomationCondition.any_deps_match(dg.AutomationCondition.newly_updated()).ignore(DBT_FOUNDATION)

SLICE_RESULTS = (
    (dg.AutomationCondition.newly_missing() | _UPDATED).since_last_handled()
    & ~_JUST_UPDATED
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("eager, ignoring the dbt foundation, a tick after the raw answers")

# any_deps_updated() without "will be requested": a comparison waits for the slice run to finish
# (a run of it launched alongside would read the slice before it is rebuilt, then run again).
_SLICES_UPDATED = dg.AutomationCondition.any_deps_match(
    dg.AutomationCondition.newly_updated() & ~dg.AutomationCondition.executed_with_root_target()
).ignore(DBT_FOUNDATION)

ACROSS_SLICES = (
    _SLICES_UPDATED.since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after the slices it compares")


# Figures are drawn after the statistics of their run: among the steps ready to run, Dagster's
# executor takes the higher `dagster/priority` first, and by default ties go alphabetically
# ("reports" before "stats"). A refresh then commits every table a researcher queries before it
# draws: at 200 slices the figures are half of the run.
AFTER_STATISTICS = {"dagster/priority": "-1"}
