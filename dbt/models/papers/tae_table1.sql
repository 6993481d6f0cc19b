{#- Tae et al. Table 1: accuracy, macro F1 and Cohen's kappa of each model over the whole
    dataset (stats.categorical_agreement, subset 'all'). Accuracy is over the answered images;
    macro F1 over the dataset's fixed labels; kappa with its asymptotic interval. -#}

with

agreement as (

    select * from {{ stats_relation('categorical_agreement', result_columns()) }}
    where subset_kind = 'all'
        and measure in ('accuracy', 'macro_f1', 'cohen_kappa')

),

cells as (

    select
        model,
        model_version,
        dataset,
        protocol,
        subset_kind,
        subset,
        measure,
        {{ stat_cell_columns() }}

    from agreement

),

{{ compare_with_published('tae_table1', 'cells', {'subset_kind': 'subset_kind', 'subset': 'subset', 'measure': 'measure'}) }},

final as (

    select * from compared

)

select * from final
