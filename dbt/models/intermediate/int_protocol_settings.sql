{#- One row per (model, model_version, dataset, protocol): the prompting setting of its emotion
    answers, read from what each answer records (inference/vlm/protocols.py puts the protocol's
    own name and the labels the emotion step offered into `preprocessing`), not from the stored
    protocol name, which `stored_as` may change. Answers that record neither (other kinds, rows
    written before) fall back to the stored name: two_stage / n_class_without_neutral.
    classification: 'two-stage' (Asanuma's neutral gate, then the emotion step), '<n>-class
    without neutral' (the emotion step offered n labels, none 'neutral'), else 'n-class'.
    A slice model (dbt_project.yml): each build replaces only its slices' rows. -#}

with

emotion_answers as (

    select
        model,
        model_version,
        dataset,
        protocol,
        json_extract_string(preprocessing, '$.protocol_name') as protocol_name,
        cast(json_extract(preprocessing, '$.offered_labels') as varchar[]) as offered_labels

    from {{ ref('int_predictions') }}

    where step_name = 'emotion'
    {{ slice_filter('and') }}

),

settings as (

    select
        model,
        model_version,
        dataset,
        protocol,
        coalesce(max(protocol_name), max(protocol)) as protocol_name,
        max(len(offered_labels)) as n_offered_labels,
        bool_or(list_contains(offered_labels, 'neutral')) as offers_neutral

    from emotion_answers

    group by model, model_version, dataset, protocol

),

final as (

    select
        *,
        case
            when {{ paper_key('protocol_name') }} like '%twostage%' then 'two-stage'
            when n_offered_labels is not null and not offers_neutral
                then n_offered_labels || '-class without neutral'
            when n_offered_labels is null and {{ paper_key('protocol_name') }} like '%withoutneutral%'
                then '6-class without neutral'
            else 'n-class'
        end as classification

    from settings

)

select * from final
