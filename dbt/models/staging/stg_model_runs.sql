with

source as (

    select * from {{ source('raw', 'model_runs') }}

),

renamed as (

    select
        cast(run_id as varchar) as run_id,
        cast(model as varchar) as model,
        cast(model_version as varchar) as model_version,
        cast(model_kind as varchar) as model_kind,
        cast(dataset as varchar) as dataset,
        cast(started_at as timestamp) as started_at,
        cast(finished_at as timestamp) as finished_at,
        cast(n_images as integer) as n_images,
        cast(n_answers as integer) as n_answers,
        cast(n_no_face as integer) as n_no_face,
        cast(weights_sha256 as varchar) as weights_sha256,
        options,
        prices

    from source

)

select * from renamed
