{#- The CTEs of group_accuracy over a relation `answers` with int_answers_with_groups' columns,
    ending in `final`: one row per (model, model_version, dataset, protocol, grouping,
    group_value, true_emotion) and per group over every emotion (true_emotion 'all'). Shared by
    group_accuracy (one slice) and group_accuracy_pooled (a dataset group's answers).
    Beside the Wilson interval over images, a cluster-aware one: the Wilson interval at the
    effective sample size n / design_effect (Korn & Graubard 1998), the design effect of the
    answered images clustered by cluster_id (macro design_effect). -#}
{% macro group_accuracy_ctes(answers) -%}
per_emotion as (

    select
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        group_value,
        true_emotion,
        count(*) as n_images,
        count(*) filter (where is_answered) as n_answered,
        count(*) filter (where is_correct) as correct

    from {{ answers }}

    group by model, model_version, dataset, protocol, grouping, group_value, true_emotion

),

all_emotions as (

    select
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        group_value,
        'all' as true_emotion,
        count(*) as n_images,
        count(*) filter (where is_answered) as n_answered,
        count(*) filter (where is_correct) as correct

    from {{ answers }}

    group by model, model_version, dataset, protocol, grouping, group_value

),

counts as (

    select * from per_emotion
    union all
    select * from all_emotions

),

cluster_counts as (

    select
        model, model_version, dataset, protocol, grouping, group_value, true_emotion, cluster_id,
        count(*) filter (where is_answered) as m,
        count(*) filter (where is_correct) as y
    from {{ answers }}
    group by model, model_version, dataset, protocol, grouping, group_value, true_emotion, cluster_id

    union all

    select
        model, model_version, dataset, protocol, grouping, group_value, 'all' as true_emotion, cluster_id,
        count(*) filter (where is_answered) as m,
        count(*) filter (where is_correct) as y
    from {{ answers }}
    group by model, model_version, dataset, protocol, grouping, group_value, cluster_id

),

moments as (

    {{ cluster_moments('cluster_counts',
        ['model', 'model_version', 'dataset', 'protocol', 'grouping', 'group_value', 'true_emotion']) }}

),

clustered as (

    select
        counts.*,
        moments.n_clusters,
        {{ design_effect('counts.correct', 'counts.n_answered', 'moments.n_clusters', 'moments.sum_yy',
                         'moments.sum_ym', 'moments.sum_mm') }} as design_effect

    from counts

    inner join moments
        on moments.model = counts.model
        and moments.model_version = counts.model_version
        and moments.dataset = counts.dataset
        and moments.protocol = counts.protocol
        and moments.grouping = counts.grouping
        and moments.group_value = counts.group_value
        and moments.true_emotion = counts.true_emotion

),

final as (

    select
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        group_value,
        true_emotion,
        n_images,
        n_answered,
        n_images - n_answered as n_unanswered,
        cast(n_answered as double) / n_images as coverage,
        n_answered as n,
        correct,
        case when n_answered > 0 then cast(correct as double) / n_answered end as accuracy,
        {{ wilson_interval('correct', 'n_answered') }},
        -- Intent-to-treat: every image of the group counts; no face, refusals, unparsable
        -- answers and maj@k ties are errors, so a detector that misses one group's faces
        -- cannot make a model look fair on the answered images alone.
        case when n_images > 0 then cast(correct as double) / n_images end as accuracy_itt,
        {{ wilson_interval('correct', 'n_images', prefix='itt_ci') }},
        n_clusters,
        n_clusters < n_answered as identities_repeat,
        design_effect,
        n_answered / design_effect as n_effective,
        {{ wilson_interval('correct / design_effect', 'n_answered / design_effect', prefix='cluster_ci') }}

    from clustered

)
{%- endmacro %}
