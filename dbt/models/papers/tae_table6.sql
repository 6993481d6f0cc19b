{#- Tae et al. Table 6: per-emotion arousal bias, mean(model - human mean) (measure
    bland_altman_bias), and the mixed model's p-value of the model-minus-human effect in that
    emotion (measure lmm_p_value): the stats.mixed_models rows with subset_kind 'emotion' and
    dimension 'arousal'. Until the statistics write such per-emotion effects the lmm_p_value
    rows are the paper's alone (row_source 'paper only'): a treatment coefficient against the
    anger baseline is not that effect and is not shown in its place. -#}

with

{{ tae_bias_cells('arousal') }},

mixed_models as (

    select * from {{ stats_relation('mixed_models', result_columns({'dimension': 'varchar'})) }}
    where subset_kind = 'emotion' and dimension = 'arousal'

),

lmm_cells as (

    select
        model,
        model_version,
        dataset,
        protocol,
        dimension,
        subset_kind,
        subset,
        'lmm_p_value' as measure,
        n,
        p_value as value,
        -- the effect itself (model minus human, rating points) and its interval
        estimate as effect_estimate,
        ci_low as effect_ci_low,
        ci_high as effect_ci_high,
        statistic,
        p_value,
        p_adjusted,
        correction,
        family,
        below_min_n,
        detail

    from mixed_models

),

all_cells as (

    select * from cells
    union all by name
    select * from lmm_cells

),

{{ compare_with_published('tae_table6', 'all_cells',
       {'dimension': 'dimension', 'subset_kind': 'subset_kind', 'subset': 'subset', 'measure': 'measure'}) }},

final as (

    select * from compared

)

select * from final
