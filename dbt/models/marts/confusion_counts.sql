with

answers as (

    select * from {{ ref('int_answers_with_groups') }}
    where is_answered
    {{ slice_filter('and') }}

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
        predicted_emotion,
        count(*) as n

    from answers

    group by
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        group_value,
        true_emotion,
        predicted_emotion

)

select * from final
