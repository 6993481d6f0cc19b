with

source as (

    select * from {{ source('raw', 'dataset_images') }}

),

renamed as (

    select
        cast(dataset as varchar) as dataset,
        cast(image_id as varchar) as image_id,
        cast(image_hash as varchar) as image_hash,
        cast(label_set as varchar) as label_set,
        cast(source_label as varchar) as source_label,
        cast(identity as varchar) as identity,
        cast(race as varchar) as source_race,
        cast(gender as varchar) as source_gender,
        cast(age as double) as age,
        cast(width as integer) as width,
        cast(height as integer) as height,
        extra,
        cast(loaded_at as timestamp) as loaded_at,
        -- rows written before the column existed are images
        coalesce(cast(media_type as varchar), 'image') as media_type

    from source

)

select * from renamed
