with

source as (

    select * from {{ source('raw', 'transport_failures') }}

),

renamed as (

    select
        cast(run_id as varchar) as run_id,
        cast(model as varchar) as model,
        cast(model_version as varchar) as model_version,
        cast(dataset as varchar) as dataset,
        cast(image_id as varchar) as image_id,
        cast(image_hash as varchar) as image_hash,
        cast(protocol as varchar) as protocol,
        cast(step as integer) as step,
        cast(step_name as varchar) as step_name,
        cast(sample_index as integer) as sample_index,
        cast(attempt as integer) as attempt,
        cast(kind as varchar) as failure_kind,
        cast(status as integer) as http_status,
        cast(message as varchar) as message,
        cast(created_at as timestamp) as created_at

    from source

)

select * from renamed
