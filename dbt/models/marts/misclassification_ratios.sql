{#- For each ordered pair of groups of a grouping (both orientations: (a, b) and (b, a), so a
    filter such as ci_low > 1 finds every disparity whichever group is worse off), how much
    more often images of group a with a given true emotion are read as a given other emotion
    than images of group b: ratio = rate_a / rate_b with a Katz log interval at var('ci_z').
    Every wrong emotion of the model's vocabulary appears, with zero counts where the model
    never chose it; predicted_emotion 'error' pools every misclassification of the true
    emotion, and true_emotion 'all' pools the emotions ('error' only). The statistics
    (stats.misclassification_tests) read these counts and intervals; they add the tests.
    Each group's cell carries its design effect over cluster_id (the identity; macro
    design_effect) and the pair a cluster-aware Katz interval on the effective counts
    count / design_effect of n / design_effect (cluster_ci_low, cluster_ci_high). -#}

with

answers as (

    select * from {{ ref('int_answers_with_groups') }}
    where is_answered and grouping <> 'all'
    {{ slice_filter('and') }}

),

final_answers as (

    select * from {{ ref('int_final_answers') }}
    {{ slice_filter('where') }}

),

emotion_label_map as (

    select * from {{ ref('emotion_label_map') }}

),

vocabulary as (

    select distinct
        final_answers.model,
        final_answers.model_version,
        final_answers.dataset,
        final_answers.protocol,
        emotion_label_map.emotion as predicted_emotion

    from final_answers

    inner join emotion_label_map
        on emotion_label_map.label_set = final_answers.label_set

),

{#- The slices' answers counted once, per cell x identity (cluster_id) x predicted emotion:
    every count and cluster moment below is a sum over these rows (each was its own pass over
    the answers: seven, and a window). -#}
cluster_cells as (

    select
        model, model_version, dataset, protocol, grouping, group_value, true_emotion, cluster_id,
        predicted_emotion,
        count(*) as n_answers

    from answers

    group by all

),

group_totals as (

    select
        model, model_version, dataset, protocol, grouping, group_value, true_emotion,
        cast(sum(n_answers) as bigint) as n

    from cluster_cells

    group by model, model_version, dataset, protocol, grouping, group_value, true_emotion

),

cell_counts as (

    select
        model, model_version, dataset, protocol, grouping, group_value, true_emotion, predicted_emotion,
        cast(sum(n_answers) as bigint) as n_predicted

    from cluster_cells

    group by model, model_version, dataset, protocol, grouping, group_value, true_emotion, predicted_emotion

),

cluster_errors as (

    select
        model, model_version, dataset, protocol, grouping, group_value, true_emotion, cluster_id,
        cast(sum(n_answers) as bigint) as m,
        cast(coalesce(sum(n_answers) filter (where predicted_emotion <> true_emotion), 0) as bigint) as y
    from cluster_cells
    group by model, model_version, dataset, protocol, grouping, group_value, true_emotion, cluster_id

),

cluster_predicted as (

    select
        cluster_cells.model, cluster_cells.model_version, cluster_cells.dataset, cluster_cells.protocol,
        cluster_cells.grouping, cluster_cells.group_value, cluster_cells.true_emotion, cluster_cells.cluster_id,
        cluster_cells.predicted_emotion,
        cluster_cells.n_answers as y,
        cluster_errors.m

    from cluster_cells

    inner join cluster_errors
        on cluster_errors.model = cluster_cells.model
        and cluster_errors.model_version = cluster_cells.model_version
        and cluster_errors.dataset = cluster_cells.dataset
        and cluster_errors.protocol = cluster_cells.protocol
        and cluster_errors.grouping = cluster_cells.grouping
        and cluster_errors.group_value = cluster_cells.group_value
        and cluster_errors.true_emotion = cluster_cells.true_emotion
        and cluster_errors.cluster_id is not distinct from cluster_cells.cluster_id

    where cluster_cells.predicted_emotion <> cluster_cells.true_emotion

),

cluster_errors_pooled as (

    select
        model, model_version, dataset, protocol, grouping, group_value, 'all' as true_emotion, cluster_id,
        cast(sum(m) as bigint) as m,
        cast(sum(y) as bigint) as y
    from cluster_errors
    group by model, model_version, dataset, protocol, grouping, group_value, cluster_id

),

error_moments as (

    select *, 'error' as predicted_emotion from (
        {{ cluster_moments('cluster_errors',
            ['model', 'model_version', 'dataset', 'protocol', 'grouping', 'group_value', 'true_emotion']) }}
    )
    union all
    select *, 'error' as predicted_emotion from (
        {{ cluster_moments('cluster_errors_pooled',
            ['model', 'model_version', 'dataset', 'protocol', 'grouping', 'group_value', 'true_emotion']) }}
    )

),

predicted_moments as (

    select
        model, model_version, dataset, protocol, grouping, group_value, true_emotion, predicted_emotion,
        sum(cast(y as double) * y) as sum_yy,
        sum(cast(y as double) * m) as sum_ym
    from cluster_predicted
    group by all

),

vocabulary_cells as (

    select
        group_totals.model,
        group_totals.model_version,
        group_totals.dataset,
        group_totals.protocol,
        group_totals.grouping,
        group_totals.group_value,
        group_totals.true_emotion,
        vocabulary.predicted_emotion,
        group_totals.n,
        coalesce(cell_counts.n_predicted, 0) as n_predicted

    from group_totals

    inner join vocabulary
        on vocabulary.model = group_totals.model
        and vocabulary.model_version = group_totals.model_version
        and vocabulary.dataset = group_totals.dataset
        and vocabulary.protocol = group_totals.protocol
        and vocabulary.predicted_emotion <> group_totals.true_emotion

    left join cell_counts
        on cell_counts.model = group_totals.model
        and cell_counts.model_version = group_totals.model_version
        and cell_counts.dataset = group_totals.dataset
        and cell_counts.protocol = group_totals.protocol
        and cell_counts.grouping = group_totals.grouping
        and cell_counts.group_value = group_totals.group_value
        and cell_counts.true_emotion = group_totals.true_emotion
        and cell_counts.predicted_emotion = vocabulary.predicted_emotion

),

any_error_per_emotion as (

    select
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        group_value,
        true_emotion,
        'error' as predicted_emotion,
        cast(sum(m) as bigint) as n,
        cast(sum(y) as bigint) as n_predicted

    from cluster_errors

    group by model, model_version, dataset, protocol, grouping, group_value, true_emotion

),

any_error_pooled as (

    select
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        group_value,
        true_emotion,
        'error' as predicted_emotion,
        cast(sum(m) as bigint) as n,
        cast(sum(y) as bigint) as n_predicted

    from cluster_errors_pooled

    group by model, model_version, dataset, protocol, grouping, group_value, true_emotion

),

counted_cells as (

    select * from vocabulary_cells
    union all
    select * from any_error_per_emotion
    union all
    select * from any_error_pooled

),

cells as (

    select
        counted_cells.*,
        error_moments.n_clusters,
        {{ design_effect('counted_cells.n_predicted', 'counted_cells.n', 'error_moments.n_clusters',
                         "case when counted_cells.predicted_emotion = 'error' then error_moments.sum_yy"
                         ~ " else coalesce(predicted_moments.sum_yy, 0) end",
                         "case when counted_cells.predicted_emotion = 'error' then error_moments.sum_ym"
                         ~ " else coalesce(predicted_moments.sum_ym, 0) end",
                         'error_moments.sum_mm') }} as design_effect

    from counted_cells

    {# every cell's group has an 'error' cell: its clusters and cluster sizes (n_clusters,
       sum_mm) are the cell's; a wrong emotion's own y moments (zero when never chosen)
       come from predicted_moments #}
    inner join error_moments
        on error_moments.model = counted_cells.model
        and error_moments.model_version = counted_cells.model_version
        and error_moments.dataset = counted_cells.dataset
        and error_moments.protocol = counted_cells.protocol
        and error_moments.grouping = counted_cells.grouping
        and error_moments.group_value = counted_cells.group_value
        and error_moments.true_emotion = counted_cells.true_emotion

    left join predicted_moments
        on counted_cells.predicted_emotion <> 'error'
        and predicted_moments.model = counted_cells.model
        and predicted_moments.model_version = counted_cells.model_version
        and predicted_moments.dataset = counted_cells.dataset
        and predicted_moments.protocol = counted_cells.protocol
        and predicted_moments.grouping = counted_cells.grouping
        and predicted_moments.group_value = counted_cells.group_value
        and predicted_moments.true_emotion = counted_cells.true_emotion
        and predicted_moments.predicted_emotion = counted_cells.predicted_emotion

),

pairs as (

    select
        a.model,
        a.model_version,
        a.dataset,
        a.protocol,
        a.grouping,
        a.true_emotion,
        a.predicted_emotion,
        a.group_value as group_a,
        b.group_value as group_b,
        a.n as n_a,
        a.n_predicted as count_a,
        b.n as n_b,
        b.n_predicted as count_b,
        a.n_clusters as n_clusters_a,
        a.design_effect as design_effect_a,
        b.n_clusters as n_clusters_b,
        b.design_effect as design_effect_b

    from cells as a

    inner join cells as b
        on b.model = a.model
        and b.model_version = a.model_version
        and b.dataset = a.dataset
        and b.protocol = a.protocol
        and b.grouping = a.grouping
        and b.true_emotion = a.true_emotion
        and b.predicted_emotion = a.predicted_emotion
        and a.group_value <> b.group_value

),

final as (

    select
        model,
        model_version,
        dataset,
        protocol,
        grouping,
        true_emotion,
        predicted_emotion,
        group_a,
        group_b,
        n_a,
        count_a,
        cast(count_a as double) / n_a as rate_a,
        n_b,
        count_b,
        cast(count_b as double) / n_b as rate_b,
        case
            when count_b > 0 then (cast(count_a as double) / n_a) / (cast(count_b as double) / n_b)
        end as ratio,
        {{ katz_ratio_interval('count_a', 'n_a', 'count_b', 'n_b') }},
        n_clusters_a,
        design_effect_a,
        n_clusters_b,
        design_effect_b,
        {{ katz_ratio_interval('count_a / design_effect_a', 'n_a / design_effect_a',
                               'count_b / design_effect_b', 'n_b / design_effect_b', prefix='cluster_ci') }}

    from pairs

)

select * from final
