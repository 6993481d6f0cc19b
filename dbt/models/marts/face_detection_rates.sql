{#- How often each face detector found a face, per group: the detector's own bias, before any
    emotion is read (an image without a face is never shown to the model, so a detector that
    misses one group's faces removes them from every answered-only metric).
    Two stages are read from raw.predictions' `preprocessing` JSON:
    - 'dataset': the dataset's preprocessing step (inference/preprocessing.py), under
      `input` (face_detector, detector, n_faces_detected); the same for every model;
    - 'model': a model's own detector (fer_xception's Haar cascade, inference/models/faces.py),
      at the top level (face_detection, detector, n_faces_detected).
    One detection per image, stage and detector (a VLM's samples and steps repeat it). -#}

with

predictions as (

    select * from {{ ref('stg_predictions') }}
    {{ slice_filter('where') }}

),

images as (

    select * from {{ ref('int_images_labeled') }}

),

detections as (
    {#- (stage, JSON root, the key naming the detector there) -#}
    {%- set stages = [('dataset', '$.input.', 'face_detector'), ('model', '$.', 'face_detection')] %}
    {%- for stage, root, name_key in stages %}

    select
        model,
        model_version,
        dataset,
        image_id,
        created_at,
        '{{ stage }}' as stage,
        json_extract_string(preprocessing, '{{ root ~ name_key }}') as detector,
        json_extract_string(preprocessing, '{{ root }}detector') as detector_config,
        cast(json_extract(preprocessing, '{{ root }}n_faces_detected') as integer) as n_faces_detected

    from predictions

    where coalesce(json_extract_string(preprocessing, '{{ root ~ name_key }}'), 'none') <> 'none'
    {%- if not loop.last %}

    union all
    {%- endif %}
    {%- endfor %}

),

per_image as (

    select
        model,
        model_version,
        dataset,
        stage,
        detector,
        image_id,
        arg_max(detector_config, created_at) as detector_config,
        arg_max(n_faces_detected, created_at) > 0 as is_detected

    from detections

    group by model, model_version, dataset, stage, detector, image_id

),

joined as (

    select
        per_image.*,
        images.race,
        images.gender,
        images.age,
        images.extra

    from per_image

    inner join images
        on images.dataset = per_image.dataset
        and images.image_id = per_image.image_id

),

groupings as (

    {{ unpivot_groupings('joined') }}

),

counts as (

    select
        model,
        model_version,
        dataset,
        stage,
        detector,
        grouping,
        group_value,
        min(detector_config) as detector_config,
        count(*) as n_images,
        count(*) filter (where is_detected) as n_detected

    from groupings

    group by model, model_version, dataset, stage, detector, grouping, group_value

),

final as (

    select
        model,
        model_version,
        dataset,
        stage,
        detector,
        detector_config,
        grouping,
        group_value,
        n_images,
        n_detected,
        n_images - n_detected as n_missed,
        cast(n_detected as double) / n_images as detection_rate,
        {{ wilson_interval('n_detected', 'n_images') }}

    from counts

)

select * from final
