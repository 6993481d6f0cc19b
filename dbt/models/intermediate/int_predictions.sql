{#- Every stored answer (stg_predictions), plus each sampled run's first sample as its own
    protocol: for a protocol with several samples per image (maj@k: sample_index 0..k-1), the
    rows of sample 0 -- every step and try -- again under protocol 'single_of_<protocol>'. So a
    single maj@5 evaluation gives both Chhua et al.'s "single" and "maj@5" columns (Table 1)
    from one bill: no second call, the single answer is the first of the five draws.
    sampled_from is the maj@k protocol of a derived row and null on a stored one. The final
    answers, the dimensional answers and the lineage read this model, so the derived protocol
    reaches every mart and statistic like a stored one. -#}

with

predictions as (

    select * from {{ ref('stg_predictions') }}

),

sampled_protocols as (

    -- protocols that drew more than one sample of some image in the slice
    select model, model_version, dataset, protocol
    from predictions
    group by model, model_version, dataset, protocol
    having max(sample_index) > 0

),

first_samples as (

    select
        * replace ('single_of_' || protocol as protocol),
        protocol as sampled_from

    from predictions

    where sample_index = 0
        and exists (
            select 1
            from sampled_protocols
            where sampled_protocols.model = predictions.model
                and sampled_protocols.model_version = predictions.model_version
                and sampled_protocols.dataset = predictions.dataset
                and sampled_protocols.protocol = predictions.protocol
        )

),

final as (

    select *, null::varchar as sampled_from from predictions
    union all by name
    select * from first_samples

)

select * from final
