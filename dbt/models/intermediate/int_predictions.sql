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

with_sample_count as (

    -- the largest sample index of the row's protocol in its slice: > 0 where it drew several
    -- samples of some image. A window over the slice's own rows, not a join to an aggregate of
    -- every slice: a filter on the slice (each slice build's) then reaches the raw answers, so a
    -- slice build reads its slice, not every answer in the warehouse (it read them all: 10^7
    -- answers for each slice at 20 versions x 100,000 images).
    select
        *,
        max(sample_index) over (partition by model, model_version, dataset, protocol) as protocol_max_sample

    from predictions

),

first_samples as (

    select
        * exclude (protocol_max_sample) replace ('single_of_' || protocol as protocol),
        protocol as sampled_from

    from with_sample_count

    where sample_index = 0
        and protocol_max_sample > 0

),

final as (

    select *, null::varchar as sampled_from from predictions
    union all by name
    select * from first_samples

)

select * from final
