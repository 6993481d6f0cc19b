{#- Chhua et al. Table 2: accuracy by race x emotion per model (emotion 'all' = the paper's
    "Accuracy" row). subset = '<race>|<emotion>' in canonical names (the paper's Hispanic is
    latino). The paper does not say which dataset(s) or method: its values match every
    dataset and protocol of a model, and every configured dataset group (dataset = the group's
    name, marts.group_accuracy_pooled): Table 2 pools datasets -- each model's Table 1
    accuracy on Chicago Face is above every race's in Table 2, GPT-4o's and Gemini's on
    RADIATE and Tarr below every race's -- so no single dataset can meet it (examples/chhua.yaml
    pools RADIATE, Tarr and Chicago Face). -#}

with

dataset_accuracy as (

    select * from {{ ref('group_accuracy') }}
    where grouping = 'race'

),

pooled_accuracy as (

    select * exclude (is_pooled, pooled_datasets, is_complete)
    from {{ ref('group_accuracy_pooled') }}
    where grouping = 'race'

),

group_accuracy as (

    select * from dataset_accuracy
    union all by name
    select * from pooled_accuracy

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
