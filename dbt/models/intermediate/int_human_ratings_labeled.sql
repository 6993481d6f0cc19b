{#- Human ratings with the rated image's canonical attributes. For dimension 'emotion' the
    rater's label maps to a canonical emotion through the image's label_set (the dataset's
    vocabulary, seed emotion_label_map), exactly like the dataset's own labels. -#}

with

ratings as (

    select * from {{ ref('stg_human_ratings') }}

),

images as (

    select * from {{ ref('int_images_labeled') }}

),

emotion_label_map as (

    select * from {{ ref('emotion_label_map') }}

),

labeled as (

    select
        ratings.dataset,
        ratings.rater,
        ratings.image_id,
        ratings.dimension,
        ratings.value,
        ratings.source_label,
        case when ratings.dimension = 'emotion' then emotion_label_map.emotion end as label,
        ratings.scale_min,
        ratings.scale_max,
        images.identity,
        images.race,
        images.gender,
        images.age,
        images.true_emotion

    from ratings

    inner join images
        on images.dataset = ratings.dataset
        and images.image_id = ratings.image_id

    left join emotion_label_map
        on ratings.dimension = 'emotion'
        and emotion_label_map.label_set = images.label_set
        and {{ label_key('emotion_label_map.source_label') }} = {{ label_key('ratings.source_label') }}

)

select * from labeled
