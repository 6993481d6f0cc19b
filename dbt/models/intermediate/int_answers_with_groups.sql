{#- Final answers joined to their labelled images, one row per answer and grouping
    ('all' and each configured grouping, macro unpivot_groupings). An image whose group attribute is null is
    left out of that grouping (but kept in 'all'). cluster_id is the unit a model can fail
    on as a whole: the dataset's identity (one person's images are not independent), or the
    image itself where the dataset gives no identity; the marts' design effects count it. -#}

with

final_answers as (

    select * from {{ ref('int_final_answers') }}
    {{ slice_filter('where') }}

),

images as (

    select * from {{ ref('int_images_labeled') }}

),

joined as (

    select
        final_answers.model,
        final_answers.model_version,
        final_answers.model_kind,
        final_answers.dataset,
        final_answers.protocol,
        final_answers.image_id,
        images.true_emotion,
        final_answers.predicted_emotion,
        final_answers.answer_status,
        final_answers.answer_status = 'answered' as is_answered,
        coalesce(final_answers.predicted_emotion = images.true_emotion, false) as is_correct,
        final_answers.is_tie,
        images.race,
        images.gender,
        images.age,
        images.extra,
        images.identity,
        final_answers.dataset || '/' || coalesce('identity:' || images.identity, 'image:' || final_answers.image_id)
            as cluster_id

    from final_answers

    inner join images
        on images.dataset = final_answers.dataset
        and images.image_id = final_answers.image_id

),

groupings as (

    {{ unpivot_groupings('joined') }}

),

final as (

    select
        model,
        model_version,
        model_kind,
        dataset,
        protocol,
        image_id,
        grouping,
        group_value,
        true_emotion,
        predicted_emotion,
        answer_status,
        is_answered,
        is_correct,
        is_tie,
        identity,
        cluster_id

    from groupings

)

select * from final
