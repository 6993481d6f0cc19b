{#- Chhua et al. Table 1: accuracy of each model x prompting (plain / chain-of-thought) x
    method (single answer / maj@k vote) on each dataset. Accuracy over the answered images
    (the paper's denominator), intent-to-treat accuracy beside it. -#}

with

group_accuracy as (

    select * from {{ ref('group_accuracy') }}
    where grouping = 'all' and true_emotion = 'all'

),

final_answers as (

    select * from {{ ref('int_final_answers') }}

),

samples_per_protocol as (

    -- k of maj@k: the samples asked per image (1 = a single answer)
    select model, model_version, dataset, protocol, max(n_samples) as k
    from final_answers
    group by model, model_version, dataset, protocol

),

cells as (

    select
        group_accuracy.model,
        group_accuracy.model_version,
        group_accuracy.dataset,
        group_accuracy.protocol,
        case when samples_per_protocol.k > 1 then 'maj@' || samples_per_protocol.k else 'single' end as method,
        case when {{ paper_key('group_accuracy.protocol') }} like '%cot%' then 'cot' else 'plain' end as prompting,
        'all' as subset_kind,
        'all' as subset,
        'accuracy' as measure,
        {{ accuracy_cell_columns('group_accuracy') }}

    from group_accuracy

    left join samples_per_protocol
        on samples_per_protocol.model = group_accuracy.model
        and samples_per_protocol.model_version = group_accuracy.model_version
        and samples_per_protocol.dataset = group_accuracy.dataset
        and samples_per_protocol.protocol = group_accuracy.protocol

),

{{ compare_with_published('chhua_table1', 'cells',
       {'method': 'method', 'prompting': 'prompting', 'subset_kind': 'subset_kind', 'subset': 'subset',
        'measure': 'measure'}) }},

final as (

    select * from compared

)

select * from final
