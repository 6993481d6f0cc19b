{#- One row per evaluated slice (model, model_version, dataset): when its newest evaluation
    finished and when its dataset was last ingested. The slice models rebuild a slice when
    slice_updated_at is newer than what they hold (macros/incremental_slices.sql). -#}

with

runs as (

    select * from {{ ref('stg_model_runs') }}

),

images as (

    select * from {{ ref('stg_dataset_images') }}

),

evaluations as (

    select
        model,
        model_version,
        dataset,
        max(finished_at) as evaluated_at,
        count(*) as n_runs

    from runs

    group by model, model_version, dataset

),

ingestions as (

    select
        dataset,
        max(loaded_at) as ingested_at

    from images

    group by dataset

),

final as (

    select
        evaluations.model,
        evaluations.model_version,
        evaluations.dataset,
        evaluations.evaluated_at,
        evaluations.n_runs,
        ingestions.ingested_at,
        greatest(evaluations.evaluated_at, ingestions.ingested_at) as slice_updated_at

    from evaluations

    left join ingestions
        on ingestions.dataset = evaluations.dataset

)

select * from final
