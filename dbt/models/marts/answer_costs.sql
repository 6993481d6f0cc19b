{#- What each stored API answer cost: its billed tokens times the price of the delivery tier
    that served it (raw.predictions.preprocessing.service_tier: standard, flex -- or standard
    when the provider shed the flex request -- or batch), at the prices the run recorded
    (raw.model_runs.prices, resolved from price_per_million_tokens: flex and batch at half the
    standard price unless configured). Answers without token counts (local models) and runs
    without prices are left out. One row per answer. -#}

with

predictions as (

    select * from {{ ref('stg_predictions') }}
    {{ slice_filter('where') }}

),

runs as (

    select run_id, prices
    from {{ ref('stg_model_runs') }}
    where prices is not null

),

billed as (

    select
        model,
        model_version,
        dataset,
        run_id,
        image_id,
        protocol,
        step,
        sample_index,
        attempt,
        coalesce(json_extract_string(preprocessing, '$.service_tier'), 'standard') as service_tier,
        coalesce(input_tokens, 0) as input_tokens,
        coalesce(output_tokens, 0) as output_tokens

    from predictions
    where input_tokens is not null or output_tokens is not null

),

priced as (

    select
        billed.*,
        cast(json_extract_string(runs.prices, '$.' || billed.service_tier || '.input') as double)
            as usd_per_million_input,
        cast(json_extract_string(runs.prices, '$.' || billed.service_tier || '.output') as double)
            as usd_per_million_output

    from billed

    inner join runs
        on runs.run_id = billed.run_id

),

final as (

    select
        *,
        (input_tokens * usd_per_million_input + output_tokens * usd_per_million_output) / 1e6 as cost_usd

    from priced

)

select * from final
