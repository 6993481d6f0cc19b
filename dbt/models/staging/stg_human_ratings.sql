with

source as (

    select * from {{ source('raw', 'human_ratings') }}

),

renamed as (

    select
        cast(dataset as varchar) as dataset,
        cast(rater as varchar) as rater,
        cast(image_id as varchar) as image_id,
        cast(dimension as varchar) as dimension,
        cast(value as double) as value,
        cast(label as varchar) as source_label,
        cast(scale_min as double) as scale_min,
        cast(scale_max as double) as scale_max,
        cast(loaded_at as timestamp) as loaded_at

    from source

)

select * from renamed
