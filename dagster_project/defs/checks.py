"""Asset checks: preconditions the marts and statistics rely on. They read `raw.*` only, through
`WarehouseResource.raw_connection` (with the slice store, without opening the warehouse file)."""


import dagster as dg

from dagster_project.defs.inference_assets import PREDICTIONS
from dagster_project.defs.ingestion import DATASET_IMAGES
from dagster_project.defs.resources import WarehouseResource

MAX_QUARANTINE_SHARE = 0.05


@dg.asset_check(asset=DATASET_IMAGES, description="Few rows quarantined: a high share means a broken manifest or copy.")
def quarantine_share_is_small(duckdb: WarehouseResource) -> dg.AssetCheckResult:
    with duckdb.raw_connection() as con:
        rows = con.execute(
            """
            with images as (select dataset, count(*) as n from raw.dataset_images group by dataset),
                 bad as (select dataset, count(*) as n from raw.quarantine group by dataset)
            select coalesce(images.dataset, bad.dataset) as dataset,
                   coalesce(images.n, 0) as n_images, coalesce(bad.n, 0) as n_quarantined
            from images full outer join bad on images.dataset = bad.dataset
            order by dataset
            """
        ).fetchall()
    shares = {ds: q / max(n + q, 1) for ds, n, q in rows}
    worst = max(shares.values(), default=0.0)
    return dg.AssetCheckResult(
        passed=worst <= MAX_QUARANTINE_SHARE and all(n > 0 for _, n, _ in rows),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "quarantine_share_by_dataset": dg.MetadataValue.json({k: round(v, 4) for k, v in shares.items()}),
            "limit": MAX_QUARANTINE_SHARE,
        },
    )


@dg.asset_check(asset=PREDICTIONS, description=(
    "Every image of an evaluated dataset has an answer from each evaluated model version, or a "
    "recorded transport failure (raw.transport_failures); a request still unanswered at the run's "
    "deadline (kind 'deadline') or never sent for the model's budget (kind 'budget') is no outcome: "
    "its slice is incomplete until a rerun asks it."))
def every_image_answered_or_recorded(duckdb: WarehouseResource) -> dg.AssetCheckResult:
    with duckdb.raw_connection() as con:
        missing = con.execute(
            """
            with slices as (select distinct model, model_version, dataset from raw.predictions)
            select s.model, s.model_version, s.dataset, count(*) as n_missing
            from slices s
            join raw.dataset_images i on i.dataset = s.dataset
            left join raw.predictions p
              on p.model = s.model and p.model_version = s.model_version
             and p.dataset = s.dataset and p.image_id = i.image_id
            left join (select distinct model, model_version, dataset, image_id from raw.transport_failures
                       where kind not in ('deadline', 'budget')) f
              on f.model = s.model and f.model_version = s.model_version
             and f.dataset = s.dataset and f.image_id = i.image_id
            where p.image_id is null and f.image_id is null
            group by all
            """
        ).df()
    return dg.AssetCheckResult(
        passed=missing.empty,
        metadata={"slices_with_missing_images": dg.MetadataValue.md(missing.to_markdown(index=False) if len(missing) else "none")},
    )


@dg.asset_check(asset=PREDICTIONS, description="Stored probability vectors are distributions (sum to 1, within [0, 1]).")
def probabilities_are_distributions(duckdb: WarehouseResource) -> dg.AssetCheckResult:
    with duckdb.raw_connection() as con:
        bad = con.execute(
            """
            with vectors as (
                select model, model_version, dataset, image_id,
                       unnest(map_values(cast(probabilities as map(varchar, double)))) as p
                from raw.predictions where probabilities is not null
            )
            select model, model_version, dataset, image_id, sum(p) as total, min(p) as lowest, max(p) as highest
            from vectors group by all
            having abs(sum(p) - 1) > 1e-4 or min(p) < 0 or max(p) > 1
            """
        ).df()
    return dg.AssetCheckResult(passed=bad.empty, metadata={"n_bad_vectors": len(bad)})
