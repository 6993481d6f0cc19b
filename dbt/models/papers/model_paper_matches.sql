{#- Which column of the seed papers each warehouse model version is set beside (papers.*), by
    the same rule as every papers view (macro name_matches: the model's `paper_name:` in
    benchmark.yaml, else a published_aliases row naming its exact version), and a hint for a
    model that matches none: how to declare its paper name. -#}

with

models as (

    select distinct model, model_version from {{ ref('int_final_answers') }}

),

published as (

    select distinct paper, model as paper_name
    from {{ ref('published_values') }}
    where coalesce(model, '') <> ''

),

published_aliases as (

    select * from {{ ref('published_aliases') }}

),

matched as (

    select models.model, models.model_version, published.paper, published.paper_name
    from models
    inner join published
        on {{ name_matches('published.paper_name', 'model', 'models.model', 'models.model_version') }}

),

final as (

    select
        models.model,
        models.model_version,
        string_agg(matched.paper || ': ' || matched.paper_name, '; ' order by matched.paper, matched.paper_name)
            as paper_columns,
        case when count(matched.paper) = 0 then
            'matches no column of the seed papers; to set it beside one, add '
            || 'models.' || models.model || '.paper_name: <the paper''s name> (or {pattern: ...}) to benchmark.yaml. '
            || 'The papers name: ' || (select string_agg(distinct paper_name, ', ' order by paper_name) from published)
        end as hint

    from models
    left join matched
        on matched.model = models.model and matched.model_version = models.model_version
    group by models.model, models.model_version

)

select * from final
