with

source as (

    select * from {{ source('raw', 'dataset_exclusions') }}

),

renamed as (

    select
        cast(dataset as varchar) as dataset,
        cast(image_id as varchar) as image_id,
        cast(field as varchar) as excluded_field,
        cast(value as varchar) as excluded_value,
        cast(reason as varchar) as reason,
        cast(excluded_at as timestamp) as excluded_at

    from source

)

select * from renamed
