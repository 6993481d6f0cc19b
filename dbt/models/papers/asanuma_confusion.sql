{#- Asanuma's confusion matrices: 7-class, 6-class without neutral, and two-stage (neutral gate,
    then 6 classes), one row per model x protocol x true x predicted emotion over the answered
    images, with the row's share. `classification` comes from the protocol
    (inference/vlm/protocols.py): two_stage -> 'two-stage', n_class_without_neutral ->
    '6-class without neutral', any other -> 'n-class' (the 7-class setting on a 7-label
    dataset). Asanuma printed the matrices as figures without numbers: the published columns
    are empty (row_source 'warehouse only'), kept so every papers table has the same shape. -#}

with

confusion_counts as (

    select * from {{ ref('confusion_counts') }}
    where grouping = 'all'

),

group_accuracy as (

    select * from {{ ref('group_accuracy') }}
    where grouping = 'all' and true_emotion <> 'all'

),

cells as (

    select
        confusion_counts.model,
        confusion_counts.model_version,
        confusion_counts.dataset,
        confusion_counts.protocol,
        case
            when {{ paper_key('confusion_counts.protocol') }} like '%twostage%' then 'two-stage'
            when {{ paper_key('confusion_counts.protocol') }} like '%withoutneutral%' then '6-class without neutral'
            else 'n-class'
        end as classification,
        'true_predicted' as subset_kind,
        confusion_counts.true_emotion || '|' || confusion_counts.predicted_emotion as subset,
        confusion_counts.true_emotion,
        confusion_counts.predicted_emotion,
        'share_of_true_emotion' as measure,
        confusion_counts.n as count,
        group_accuracy.n_answered as n,
        group_accuracy.n_unanswered as n_unanswered_true_emotion,
        cast(confusion_counts.n as double) / group_accuracy.n_answered as value

    from confusion_counts

    inner join group_accuracy
        on group_accuracy.model = confusion_counts.model
        and group_accuracy.model_version = confusion_counts.model_version
        and group_accuracy.dataset = confusion_counts.dataset
        and group_accuracy.protocol = confusion_counts.protocol
        and group_accuracy.true_emotion = confusion_counts.true_emotion

),

{{ compare_with_published('asanuma_confusion', 'cells', {'subset_kind': 'subset_kind', 'subset': 'subset', 'measure': 'measure'}) }},

final as (

    select * from compared

)

select * from final
