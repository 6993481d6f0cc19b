{#- The human baseline beside the models, per dataset x grouping x true emotion ('all' too):
    for each human measure of int_human_category_baseline, one 'human' row (reader 'human', model
    'human', model_version = the human sample) and, for each model version x protocol with
    answers on those images, one 'model' row over exactly the same images.
    - share_choosing_intended: human value = mean over images of the share of raters choosing
      the intended expression (the expected accuracy of one random rater); model value = its
      accuracy over the answered images among them (correct / answered, as marts.group_accuracy).
    - mean_perceived_rating: human value = mean 1..7 rating of how much the (neutral) faces look
      like perceived_emotion; model value = the share of the answered images the model read as
      perceived_emotion. Different scales: set side by side, never subtracted.
    n_images: images behind the value (for a model: its answered images); n_images_with_baseline:
    the images carrying the human measure. A view over every slice (tag across_slices). -#}

with

baseline as (

    select * from {{ ref('int_human_category_baseline') }}

),

images as (

    select dataset, image_id, true_emotion, race, gender
    from {{ ref('int_images_labeled') }}

),

baseline_images as (

    select
        baseline.*,
        images.true_emotion,
        images.race,
        images.gender

    from baseline

    inner join images
        on images.dataset = baseline.dataset
        and images.image_id = baseline.image_id

),

grouped as (

    {{ unpivot_groupings('baseline_images') }}

),

-- each image counts in its true emotion and in 'all'
by_emotion as (

    select * from grouped
    union all
    select * replace ('all' as true_emotion) from grouped

),

human as (

    select
        dataset,
        grouping,
        group_value,
        true_emotion,
        measure,
        human_sample,
        perceived_emotion,
        'human' as reader,
        'human' as model,
        human_sample as model_version,
        'human_baseline' as protocol,
        count(*) as n_images,
        count(*) as n_images_with_baseline,
        avg(human_value) as value

    from by_emotion

    group by dataset, grouping, group_value, true_emotion, measure, human_sample, perceived_emotion

),

answers as (

    select * from {{ ref('int_answers_with_groups') }}

),

models as (

    select
        by_emotion.dataset,
        by_emotion.grouping,
        by_emotion.group_value,
        by_emotion.true_emotion,
        by_emotion.measure,
        by_emotion.human_sample,
        by_emotion.perceived_emotion,
        'model' as reader,
        answers.model,
        answers.model_version,
        answers.protocol,
        count(*) filter (where answers.is_answered) as n_images,
        count(*) as n_images_with_baseline,
        case by_emotion.measure
            when 'share_choosing_intended'
                then avg(case when answers.is_correct then 1.0 else 0.0 end) filter (where answers.is_answered)
            else avg(case when answers.predicted_emotion = by_emotion.perceived_emotion then 1.0 else 0.0 end)
                filter (where answers.is_answered)
        end as value

    from by_emotion

    inner join answers
        on answers.dataset = by_emotion.dataset
        and answers.image_id = by_emotion.image_id
        and answers.grouping = by_emotion.grouping
        and answers.group_value = by_emotion.group_value

    group by
        by_emotion.dataset, by_emotion.grouping, by_emotion.group_value, by_emotion.true_emotion,
        by_emotion.measure, by_emotion.human_sample, by_emotion.perceived_emotion,
        answers.model, answers.model_version, answers.protocol

),

final as (

    select
        *,
        case measure
            when 'share_choosing_intended' then 'share 0..1'
            else 'human: mean rating 1..7; model: share 0..1'
        end as value_scale,
        case measure
            when 'share_choosing_intended'
                then 'human: mean share of validation raters choosing the intended expression (one random rater''s expected accuracy); model: accuracy over its answered images among the same images'
            else 'human: mean norming rating (1..7) of how ' || perceived_emotion || ' the neutral faces look; model: share of its answered images read as ' || perceived_emotion || ' (not an accuracy)'
        end as meaning

    from (
        select * from human
        union all by name
        select * from models
    )

)

select * from final
