{#- Shared cells of Tae et al.'s dimensional tables (papers.tae_table3 ... tae_table6). -#}


{#- CTE `cells`: the per-emotion Bland-Altman bias of `dimension` (mean of model - human mean
    over the emotion's images) from stats.dimensional_agreement, with its t-interval and t-test. -#}
{% macro tae_bias_cells(dimension) -%}

dimensional as (

    select * from {{ stats_relation('dimensional_agreement', result_columns({'dimension': 'varchar'})) }}
    where subset_kind = 'emotion'
        and measure = 'bland_altman_bias'
        and dimension = '{{ dimension }}'

),

cells as (

    select
        model,
        model_version,
        dataset,
        protocol,
        dimension,
        subset_kind,
        subset,
        measure,
        {{ stat_cell_columns() }}

    from dimensional

)

{%- endmacro %}


{#- A whole model (Tae et al. Tables 3 and 5): Pearson r and MAE against the mean human rating
    (stats.dimensional_agreement, subset 'all'); the model's mean and SD over the images it
    rated; the humans' mean and SD over the per-image mean ratings of the dataset (the same for
    every model, as in the paper). Means and SDs are on the dataset's rating scale. -#}
{% macro tae_dimension_summary(papers_model, dimension) -%}

with

dimensional as (

    select * from {{ stats_relation('dimensional_agreement', result_columns({'dimension': 'varchar'})) }}
    where subset_kind = 'all'
        and measure in ('pearson_r', 'mae')
        and dimension = '{{ dimension }}'

),

model_values as (

    select * from {{ ref('int_model_dimensional_answers') }}
    where dimension = '{{ dimension }}' and value is not null

),

human_ratings as (

    select * from {{ ref('int_human_ratings_labeled') }}
    where dimension = '{{ dimension }}' and value is not null

),

human_per_image as (

    select dataset, image_id, avg(value) as human_mean
    from human_ratings
    group by dataset, image_id

),

human_summary as (

    select
        dataset,
        count(*) as n,
        avg(human_mean) as mean_value,
        stddev_samp(human_mean) as sd_value

    from human_per_image

    group by dataset

),

model_summary as (

    select
        model,
        model_version,
        dataset,
        protocol,
        count(*) as n,
        avg(value) as mean_value,
        stddev_samp(value) as sd_value

    from model_values

    group by model, model_version, dataset, protocol

),

summary_cells as (

    select model_summary.model, model_summary.model_version, model_summary.dataset, model_summary.protocol,
        measures.measure, measures.n, measures.value
    from model_summary
    left join human_summary on human_summary.dataset = model_summary.dataset
    cross join lateral (
        values
            ('model_mean', model_summary.n, model_summary.mean_value),
            ('model_sd', model_summary.n, model_summary.sd_value),
            ('human_mean', human_summary.n, human_summary.mean_value),
            ('human_sd', human_summary.n, human_summary.sd_value)
    ) as measures (measure, n, value)
    where measures.n is not null

),

cells as (

    select
        model,
        model_version,
        dataset,
        protocol,
        '{{ dimension }}' as dimension,
        'all' as subset_kind,
        'all' as subset,
        measure,
        {{ stat_cell_columns() }}

    from dimensional

    union all by name

    select
        *,
        '{{ dimension }}' as dimension,
        'all' as subset_kind,
        'all' as subset

    from summary_cells

),

{{ compare_with_published(papers_model, 'cells',
       {'dimension': 'dimension', 'subset_kind': 'subset_kind', 'subset': 'subset', 'measure': 'measure'}) }},

final as (

    select * from compared

)

select * from final

{%- endmacro %}
