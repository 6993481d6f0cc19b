with

answers as (

    select * from {{ ref('int_answers_with_groups') }}
    {{ slice_filter('where') }}

),

per_emotion as (

    select
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        group_value,
        true_emotion,
        count(*) as n_images,
        count(*) filter (where is_answered) as n_answered,
        count(*) filter (where is_correct) as correct

    from answers

    group by model, model_version, dataset, protocol, grouping, group_value, true_emotion

),

all_emotions as (

    select
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        group_value,
        'all' as true_emotion,
        count(*) as n_images,
        count(*) filter (where is_answered) as n_answered,
        count(*) filter (where is_correct) as correct

    from answers

    group by model, model_version, dataset, protocol, grouping, group_value

),

counts as (

    select * from per_emotion
    union all
    select * from all_emotions

),

final as (

    select
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        group_value,
        true_emotion,
        n_images,
        n_answered,
        n_images - n_answered as n_unanswered,
        cast(n_answered as double) / n_images as coverage,
        n_answered as n,
        correct,
        case when n_answered > 0 then cast(correct as double) / n_answered end as accuracy,
        {{ wilson_interval('correct', 'n_answered') }},
        -- Intent-to-treat: every image of the group counts; no face, refusals, unparsable
        -- answers and maj@k ties are errors, so a detector that misses one group's faces
        -- cannot make a model look fair on the answered images alone.
        case when n_images > 0 then cast(correct as double) / n_images end as accuracy_itt,
        {{ wilson_interval('correct', 'n_images', prefix='itt_ci') }}

    from counts

)

select * from final
