{#- Asanuma's confusion matrices: 7-class, 6-class without neutral, and two-stage (neutral gate,
    then 6 classes), one row per model x protocol x true x predicted emotion over the answered
    images, with the row's share. `classification` is the setting the answers record
    (int_protocol_settings: the protocol's own name and the labels offered, whatever name
    `stored_as` gave the protocol): 'two-stage', '6-class without neutral', else 'n-class'
    (the 7-class setting on a 7-label dataset). Asanuma printed the matrices as figures without
    numbers: the published columns are empty (row_source 'warehouse only'), kept so every
    papers table has the same shape. -#}

with

confusion_counts as (

    select * from {{ ref('confusion_counts') }}
    where grouping = 'all'

),

group_accuracy as (

    select * from {{ ref('group_accuracy') }}
    where grouping = 'all' and true_emotion <> 'all'

),

settings as (

    select * from {{ ref('int_protocol_settings') }}

),

cells as (

    select
        confusion_counts.model,
        confusion_counts.model_version,
        confusion_counts.dataset,
        confusion_counts.protocol,
        coalesce(settings.classification, 'n-class') as classification,
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

    left join settings
        on settings.model = confusion_counts.model
        and settings.model_version = confusion_counts.model_version
        and settings.dataset = confusion_counts.dataset
        and settings.protocol = confusion_counts.protocol

),

{{ compare_with_published('asanuma_confusion', 'cells', {'subset_kind': 'subset_kind', 'subset': 'subset', 'measure': 'measure'}) }},

final as (

    select * from compared

)

select * from final
