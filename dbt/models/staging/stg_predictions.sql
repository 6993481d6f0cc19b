with

source as (

    select * from {{ source('raw', 'predictions') }}

),

renamed as (

    select
        cast(run_id as varchar) as run_id,
        cast(model as varchar) as model,
        cast(model_version as varchar) as model_version,
        cast(model_kind as varchar) as model_kind,
        cast(label_set as varchar) as label_set,
        cast(dataset as varchar) as dataset,
        cast(image_id as varchar) as image_id,
        cast(image_hash as varchar) as image_hash,
        cast(protocol as varchar) as protocol,
        cast(step as integer) as step,
        cast(step_name as varchar) as step_name,
        cast(sample_index as integer) as sample_index,
        cast(attempt as integer) as attempt,
        cast(prompt_hash as varchar) as prompt_hash,
        cast(raw_text as varchar) as raw_text,
        cast(parse_status as varchar) as parse_status,
        cast(predicted_label as varchar) as predicted_label,
        cast(predicted_value as double) as predicted_value,
        cast(raw_value as double) as raw_value,
        cast(value_mapping as varchar) as value_mapping,
        probabilities,
        cast(face_found as boolean) as face_found,
        face_box,
        preprocessing,
        cast(latency_ms as double) as latency_ms,
        cast(input_tokens as integer) as input_tokens,
        cast(output_tokens as integer) as output_tokens,
        cast(created_at as timestamp) as created_at

    from source

)

select * from renamed
