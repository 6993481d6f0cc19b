"""Ingestion: each configured dataset -> raw.dataset_images (+ raw.quarantine)."""


import dagster as dg

from dagster_project.defs.partitions import dataset_partitions
from dagster_project.defs.resources import WarehouseResource
from dagster_project.settings import benchmark_config
from inference import warehouse
from inference.datasets import load_dataset
from inference.datasets.labels import load_label_map
from inference.frames import dataset_images_frame, quarantine_frame
from inference.pipeline import dataset_location

DATASET_IMAGES = dg.AssetKey(["raw", "dataset_images"])
QUARANTINE = dg.AssetKey(["raw", "quarantine"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            DATASET_IMAGES,
            description="One row per loadable image: content hash, dataset label, race, gender, age.",
            group_name="ingestion",
            kinds={"duckdb", "python"},
        ),
        dg.AssetSpec(
            QUARANTINE,
            description="Rows of a dataset that could not be loaded, each with the reason and the fix.",
            group_name="ingestion",
            kinds={"duckdb"},
        ),
    ],
    partitions_def=dataset_partitions,
)
def dataset_images(context: dg.AssetExecutionContext, duckdb: WarehouseResource):
    """Load one dataset; bad rows are quarantined and the rest still loads."""
    bench = benchmark_config()
    ds = bench.datasets[context.partition_key]
    location = dataset_location(bench, ds)
    load = load_dataset(ds, location, load_label_map())
    images = dataset_images_frame(ds.name, ds.effective_label_set, load)
    quarantined = quarantine_frame(ds.name, load)
    with duckdb.get_connection() as con:
        warehouse.replace_slice(con, "raw.dataset_images", {"dataset": ds.name}, images)
        warehouse.replace_slice(con, "raw.quarantine", {"dataset": ds.name}, quarantined)
    context.log.info(f"{ds.name}: {len(images)} images loaded, {len(quarantined)} quarantined")
    reasons = quarantined["reason"].value_counts().head(10).to_dict() if len(quarantined) else {}
    yield dg.MaterializeResult(
        asset_key=DATASET_IMAGES,
        metadata={
            "dataset": ds.name,
            "kind": ds.kind,
            "n_images": len(images),
            "n_identities": int(images["identity"].nunique()),
            "images_by_race": dg.MetadataValue.json(
                images.drop_duplicates("identity")["race"].fillna("(missing)").value_counts().to_dict()
            ),
            "dagster/row_count": len(images),
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
