"""Ingestion: each configured dataset -> raw.dataset_images (+ raw.dataset_exclusions,
raw.quarantine, raw.human_ratings)."""


import dagster as dg
import pandas as pd

from dagster_project.defs.partitions import dataset_partitions
from dagster_project.defs.resources import WarehouseResource
from dagster_project.settings import benchmark_config
from inference.pipeline import model_quarantine_sources
from inference.slice_rows import dataset_rows

DATASET_IMAGES = dg.AssetKey(["raw", "dataset_images"])
QUARANTINE = dg.AssetKey(["raw", "quarantine"])
DATASET_EXCLUSIONS = dg.AssetKey(["raw", "dataset_exclusions"])
HUMAN_RATINGS = dg.AssetKey(["raw", "human_ratings"])


def images_by_group(images: pd.DataFrame) -> dict:
    """Counts of a dataset's images (rows) and of its identities, per race: the London Set
    has two images of each identity, so the two differ."""
    race = images["race"].fillna("(missing)")
    return {
        "n_identities": int(images["identity"].nunique()),
        "images_by_race": dg.MetadataValue.json(race.value_counts().to_dict()),
        "identities_by_race": dg.MetadataValue.json(
            race.groupby(images["identity"]).first().value_counts().to_dict()),
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            DATASET_IMAGES,
            description="One row per loadable image: content hash, dataset label, race, gender, age.",
            group_name="ingestion",
            kinds={"duckdb", "python"},
        ),
        dg.AssetSpec(
            DATASET_EXCLUSIONS,
            description=("Images the dataset's kind left out on purpose (its preset's or the config's "
                         "exclusions), each with the rule and the reason."),
            group_name="ingestion",
            kinds={"duckdb"},
        ),
        dg.AssetSpec(
            QUARANTINE,
            description="Rows of a dataset that could not be loaded, each with the reason and the fix.",
            group_name="ingestion",
            kinds={"duckdb"},
        ),
        dg.AssetSpec(
            HUMAN_RATINGS,
            description=(
                "Human ratings of the dataset's images, one row per rater x image x dimension "
                "(emotion label, or a numeric value with its scale); datasets.<name>.human_ratings."
            ),
            group_name="ingestion",
            kinds={"duckdb", "python"},
        ),
    ],
    partitions_def=dataset_partitions,
)
def dataset_images(context: dg.AssetExecutionContext, duckdb: WarehouseResource):
    """Load one dataset (and its human ratings); bad rows are quarantined and the rest still loads."""
    bench = benchmark_config()
    ds = bench.datasets[context.partition_key]
    loaded = dataset_rows(bench, ds)
    images, quarantined, ratings, load = loaded.images, loaded.quarantined, loaded.ratings, loaded.load
    exclusions = loaded.exclusions
    ratings_quarantined = load.ratings.quarantined if load.ratings else []
    # rows quarantined by model assets (imported prediction files) are theirs to replace
    duckdb.write_dataset(ds.name, images=images, quarantined=quarantined, ratings=ratings,
                         keep_sources=model_quarantine_sources(bench, ds.name), exclusions=exclusions)
    context.log.info(
        f"{ds.name}: {len(images)} images loaded, {len(ratings)} human ratings, "
        f"{len(quarantined)} rows quarantined, {len(exclusions)} images excluded"
    )
    reasons = quarantined["reason"].value_counts().head(10).to_dict() if len(quarantined) else {}
    yield dg.MaterializeResult(
        asset_key=DATASET_IMAGES,
        metadata={
            "dataset": ds.name,
            "kind": ds.kind,
            "n_images": len(images),
            **images_by_group(images),
            "dagster/row_count": len(images),
        },
    )
    yield dg.MaterializeResult(
        asset_key=DATASET_EXCLUSIONS,
        metadata={
            "dataset": ds.name,
            "n_excluded": len(exclusions),
            "excluded_by_reason": dg.MetadataValue.json(
                exclusions["reason"].value_counts().to_dict() if len(exclusions) else {}),
            "dagster/row_count": len(exclusions),
        },
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINE,
        metadata={
            "dataset": ds.name,
            "n_quarantined": len(quarantined),
            "top_reasons": dg.MetadataValue.json(reasons),
        },
    )
    if load.ratings_source is None:
        ratings_meta = {"dataset": ds.name, "source": "no human ratings configured", "dagster/row_count": 0}
    else:
        ratings_meta = {
            "dataset": ds.name,
            "source": str(load.ratings_source),
            "n_ratings": len(ratings),
            "n_raters": int(ratings["rater"].nunique()),
            "n_quarantined": len(ratings_quarantined),
            "ratings_by_dimension": dg.MetadataValue.json(ratings["dimension"].value_counts().to_dict()),
            "dagster/row_count": len(ratings),
        }
    yield dg.MaterializeResult(asset_key=HUMAN_RATINGS, metadata=ratings_meta)
