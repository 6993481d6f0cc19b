with

source as (

    select * from {{ source('raw', 'model_versions') }}

),

renamed as (

    select
        cast(model as varchar) as model,
        cast(model_version as varchar) as model_version,
        cast(model_kind as varchar) as model_kind,
        cast(discovered_at as timestamp) as discovered_at,
        cast(discovered_by as varchar) as discovered_by,
        cast(discovered_from as varchar) as discovered_from,
        cast(first_run_id as varchar) as first_run_id

    from source

)

select * from renamed
