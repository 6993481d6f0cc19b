{#- What a run's stored answers cost, per delivery tier that served them and in total
    (service_tier 'all'): marts.answer_costs summed. One row per run and tier. -#}

with

answers as (

    select * from {{ ref('answer_costs') }}
    {{ slice_filter('where') }}

),

per_tier as (

    select
        model, model_version, dataset, run_id, service_tier,
        count(*) as n_answers,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cost_usd) as cost_usd

    from answers
    group by model, model_version, dataset, run_id, service_tier

),

total as (

    select
        model, model_version, dataset, run_id, 'all' as service_tier,
        sum(n_answers) as n_answers,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cost_usd) as cost_usd

    from per_tier
    group by model, model_version, dataset, run_id

),

final as (

    select
        model, model_version, dataset, run_id, service_tier,
        cast(n_answers as bigint) as n_answers,
        cast(input_tokens as bigint) as input_tokens,
        cast(output_tokens as bigint) as output_tokens,
        cast(cost_usd as double) as cost_usd

    from (select * from per_tier union all select * from total)

)

select * from final
