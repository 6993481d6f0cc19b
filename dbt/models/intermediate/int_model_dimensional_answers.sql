{#- One numeric answer per (model, model_version, dataset, protocol, image_id, dimension)
    for the steps named 'valence' and 'arousal'. Per sample the last try counts (highest
    step, then highest attempt, as in int_final_answers); the value is the mean of the valid
    samples' predicted_value (already on the model's target scale; see value_mapping).
    Images without a valid sample keep a row with a null value. -#}

with

predictions as (

    select * from {{ ref('int_predictions') }}
    where step_name in ('valence', 'arousal')
    {{ slice_filter('and') }}

),

images as (

    select * from {{ ref('int_images_labeled') }}

),

last_attempts as (

    select *
    from predictions
    qualify row_number() over (
        partition by model, model_version, dataset, protocol, image_id, step_name, sample_index
        order by step desc, attempt desc
    ) = 1

),

per_image as (

    select
        model,
        model_version,
        dataset,
        protocol,
        image_id,
        step_name as dimension,
        arg_max(model_kind, sample_index) as model_kind,
        avg(predicted_value) filter (
            where parse_status in ('ok', 'repaired') and predicted_value is not null
        ) as value,
        count(*) as n_samples,
        count(*) filter (
            where parse_status in ('ok', 'repaired') and predicted_value is not null
        ) as n_valid,
        max(value_mapping) as value_mapping

    from last_attempts

    group by model, model_version, dataset, protocol, image_id, step_name

),

final as (

    select
        per_image.model,
        per_image.model_version,
        per_image.model_kind,
        per_image.dataset,
        per_image.protocol,
        per_image.image_id,
        per_image.dimension,
        per_image.value,
        per_image.n_samples,
        per_image.n_valid,
        per_image.value_mapping,
        images.identity,
        images.race,
        images.gender,
        images.age,
        images.true_emotion

    from per_image

    inner join images
        on images.dataset = per_image.dataset
        and images.image_id = per_image.image_id

)

select * from final
