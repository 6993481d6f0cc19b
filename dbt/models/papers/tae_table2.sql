{#- Tae et al. Table 2: accuracy per intended emotion (proportion correct of the answered
    images), every model. Counts and Wilson intervals from marts.group_accuracy; the
    intent-to-treat accuracy (unanswered images as errors) beside it. -#}

with

group_accuracy as (

    select * from {{ ref('group_accuracy') }}
    where grouping = 'all' and true_emotion <> 'all'

),

cells as (

    select
        model,
        model_version,
        dataset,
        protocol,
        'emotion' as subset_kind,
        true_emotion as subset,
        'accuracy' as measure,
        {{ accuracy_cell_columns('group_accuracy') }}

    from group_accuracy

),

{{ compare_with_published('tae_table2', 'cells', {'subset_kind': 'subset_kind', 'subset': 'subset', 'measure': 'measure'}) }},

final as (

    select * from compared

)

select * from final
