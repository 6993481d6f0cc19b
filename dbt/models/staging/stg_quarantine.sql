with

source as (

    select * from {{ source('raw', 'quarantine') }}

),

renamed as (

    select
        cast(dataset as varchar) as dataset,
        cast(source as varchar) as source_file,
        cast(row_number as integer) as row_number,
        cast(image_path as varchar) as image_path,
        cast(reason as varchar) as reason,
        record,
        cast(quarantined_at as timestamp) as quarantined_at

    from source

)

select * from renamed
