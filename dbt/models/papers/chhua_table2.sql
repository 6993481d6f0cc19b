{#- Chhua et al. Table 2: accuracy by race x emotion per model (emotion 'all' = the paper's
    "Accuracy" row). subset = '<race>|<emotion>' in canonical names (the paper's Hispanic is
    latino). The paper does not say which dataset(s) or method: its values match every
    dataset and protocol of a model. -#}

with

group_accuracy as (

    select * from {{ ref('group_accuracy') }}
    where grouping = 'race'

),

cells as (

    select
        model,
        model_version,
        dataset,
        protocol,
        group_value as race,
        true_emotion,
        'race_emotion' as subset_kind,
        group_value || '|' || true_emotion as subset,
        'accuracy' as measure,
        {{ accuracy_cell_columns('group_accuracy') }}

    from group_accuracy

),

{{ compare_with_published('chhua_table2', 'cells',
       {'subset_kind': 'subset_kind', 'subset': 'subset', 'measure': 'measure'}) }},

final as (

    select * from compared

)

select * from final
