with

answers as (

    select * from {{ ref('int_answers_with_groups') }}
    {{ slice_filter('where') }}

),

status_counts as (

    select
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        group_value,
        answer_status,
        count(*) as n

    from answers

    group by model, model_version, dataset, protocol, grouping, group_value, answer_status

),

final as (

    select
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        group_value,
        answer_status,
        n,
        cast(sum(n) over (
            partition by model, model_version, dataset, protocol, grouping, group_value
        ) as bigint) as n_images,
        cast(n as double) / sum(n) over (
            partition by model, model_version, dataset, protocol, grouping, group_value
        ) as share

    from status_counts

)

select * from final
