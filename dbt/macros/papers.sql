{#- Helpers of the `papers` schema (dbt/models/papers/): every table of the seed papers rebuilt
    from the warehouse, one row per table cell, next to the value the paper printed (seed
    published_values). -#}


{#- A name as the papers and the warehouse can both spell it: lower case, letters and digits
    only ('Gemma3-4B', 'gemma3_4b' -> 'gemma34b'; 'Chicago Face' -> 'chicagoface'). -#}
{% macro paper_key(expr) -%}
regexp_replace(lower(coalesce({{ expr }}, '')), '[^a-z0-9]', '', 'g')
{%- endmacro %}


{#- True when the paper's name `published` (a column of published_values) names the warehouse
    thing `name` (a model or dataset name; `version`: a model's version expression):
    * the paper left it unstated ('');
    * benchmark.yaml declares its `paper_name:` (dbt var paper_names, inference.config.paper_names):
      then that alone decides -- the exact name, or a pattern the whole name matches;
    * otherwise a seed published_aliases row of `kind` maps it: for a model, its exact version
      (a provider's pinned id such as gpt-4o-2024-05-13); for a dataset, its exact name. A
      dataset is also matched by the same spelling (paper_key); a model's name never is: a user
      names models freely (a `gpt4o` running gpt-4o-mini is not the paper's GPT-4o). -#}
{% macro name_matches(published, kind, name, version=none) -%}
    {%- set declared = var('paper_names', {}).get(kind ~ 's', {}) -%}
    {%- set candidate = version if kind == 'model' else name -%}
(
    coalesce({{ published }}, '') = ''
    or coalesce(
        {%- if declared %}
        case {{ name }}
            {%- for thing, spelled in declared.items() %}
            when '{{ thing }}' then
                {%- if 'pattern' in spelled %} regexp_full_match({{ published }}, '{{ spelled['pattern'] | replace("'", "''") }}')
                {%- else %} {{ published }} = '{{ spelled['exact'] | replace("'", "''") }}'
                {%- endif %}
            {%- endfor %}
        end,
        {%- else %}
        cast(null as boolean),
        {%- endif %}
        {%- if kind == 'dataset' %}
        {{ paper_key(published) }} = {{ paper_key(name) }} or
        {%- endif %}
        exists (
            select 1
            from published_aliases
            where published_aliases.kind = '{{ kind }}'
                and published_aliases.paper_name = {{ published }}
                and published_aliases.alias = {{ candidate }}
        )
    )
)
{%- endmacro %}


{#- A stats.* table that Python writes (dagster_project/defs/stats_io.replace_rows), or, while
    the statistics have not run yet (a fresh warehouse, a plain `dbt build`), an empty relation
    with `columns` ({name: type}) so the papers views still build; the Dagster asset
    `warehouse_after_stats` rebuilds them after the statistics. Unit tests always read their
    fixture. -#}
{% macro stats_relation(table_name, columns) -%}
    {%- set relation = source('stats', table_name) -%}
    {%- if model.resource_type == 'unit_test' or not execute -%}
    {{ relation }}
    {%- else -%}
        {%- set found = adapter.get_relation(database=relation.database, schema=relation.schema,
                                             identifier=relation.identifier) -%}
        {#- A stats table written before any slice had data for it (e.g. no human ratings on the
            London demo) may lack the extra columns: then it holds no rows the view could use. -#}
        {%- set stored = adapter.get_columns_in_relation(found) | map(attribute='name') | map('lower') | list
                         if found is not none else [] -%}
        {%- set missing = columns.keys() | reject('in', stored) | list -%}
        {%- if found is not none and not missing -%}
        {#- Cast to the declared types: a stats table written from an empty frame has untyped
            (NULL) columns, which the papers views' contracts refuse. -#}
    (select * replace ({% for name, type in columns.items() %}cast({{ name }} as {{ type }}) as {{ name }}{{ ', ' if not loop.last }}{% endfor %}) from {{ relation }})
        {%- else -%}
    (select {% for name, type in columns.items() %}cast(null as {{ type }}) as {{ name }}{{ ', ' if not loop.last }}{% endfor %} where false)
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- The columns of every RESULT_COLUMNS-shaped stats table (dagster_project/analysis/results.py)
    that the papers models read, with the extras they use. -#}
{% macro result_columns(extra={}) -%}
    {%- set columns = {
        'analysis': 'varchar', 'model': 'varchar', 'model_version': 'varchar', 'dataset': 'varchar',
        'protocol': 'varchar', 'subset_kind': 'varchar', 'subset': 'varchar', 'measure': 'varchar',
        'n': 'bigint', 'estimate': 'double', 'ci_low': 'double', 'ci_high': 'double',
        'statistic': 'double', 'p_value': 'double', 'p_adjusted': 'double', 'correction': 'varchar',
        'family': 'varchar', 'family_m': 'bigint', 'below_min_n': 'boolean', 'detail': 'varchar',
    } -%}
    {%- do columns.update(extra) -%}
    {{ return(columns) }}
{%- endmacro %}


{#- The last CTEs of every papers model. `warehouse` is a CTE with one row per table cell the
    warehouse can fill: model, model_version, dataset, `value` and the columns named in `on`.
    Each row is joined to the paper's value of the same cell (published_values rows of
    `papers_model`: model and dataset by name_matches, the `on` columns equal), and the paper's
    cells no warehouse row matched are added (row_source 'paper only'), so the table shows the
    paper whole. Columns added: published_id, published_model, published_dataset,
    published_value, published_text, published_relation, rounding_unit, difference
    (value - published_value), within_rounding, source, source_file, source_line,
    published_note, row_source ('warehouse and paper', 'warehouse only', 'paper only'). -#}
{% macro compare_with_published(papers_model, warehouse, on) -%}

published as (

    select * from {{ ref('published_values') }}
    where papers_model = '{{ papers_model }}'

),

published_aliases as (

    select * from {{ ref('published_aliases') }}

),

joined as (

    select
        {{ warehouse }}.*,
        {{ published_columns('published') }}

    from {{ warehouse }}

    left join published
        on {{ name_matches('published.model', 'model', warehouse ~ '.model', warehouse ~ '.model_version') }}
        and {{ name_matches('published.dataset', 'dataset', warehouse ~ '.dataset') }}
        {%- for warehouse_column, published_column in on.items() %}
        and {{ warehouse }}.{{ warehouse_column }} = published.{{ published_column }}
        {%- endfor %}

),

paper_only as (

    select
        {%- for warehouse_column, published_column in on.items() %}
        published.{{ published_column }} as {{ warehouse_column }},
        {%- endfor %}
        {{ published_columns('published') }}

    from published

    where published.published_id not in (
        select published_id from joined where published_id is not null
    )

),

compared as (

    select
        *,
        value - published_value as difference,
        -- '=': the paper printed the value rounded to rounding_unit; '<': it printed a bound
        -- (p < .001). A tiny slack absorbs the binary representation of decimal values.
        case
            when value is null or published_value is null then null
            when published_relation = '<' then value < published_value
            else abs(value - published_value) <= rounding_unit / 2 + 1e-9
        end as within_rounding,
        case when published_id is null then 'warehouse only' else 'warehouse and paper' end as row_source

    from joined

    union all by name

    select
        *,
        cast(null as double) as difference,
        cast(null as boolean) as within_rounding,
        'paper only' as row_source

    from paper_only

)

{%- endmacro %}


{#- The published_values columns every papers row carries, from the relation `alias`. -#}
{% macro published_columns(alias) -%}
    {{ alias }}.published_id,
        {{ alias }}.paper,
        {{ alias }}.paper_table,
        {{ alias }}.model as published_model,
        {{ alias }}.dataset as published_dataset,
        {{ alias }}.published_value,
        {{ alias }}.published_text,
        {{ alias }}.relation as published_relation,
        {{ alias }}.rounding_unit,
        {{ alias }}.source,
        {{ alias }}.source_file,
        {{ alias }}.source_line,
        {{ alias }}.note as published_note
{%- endmacro %}


{#- A marts.group_accuracy row as a papers cell: counts, accuracy over the answered images as
    `value` with its Wilson interval, and the intent-to-treat accuracy beside it. -#}
{% macro accuracy_cell_columns(alias='group_accuracy') -%}
    {{ alias }}.n_images,
        {{ alias }}.n_answered as n,
        {{ alias }}.correct,
        {{ alias }}.accuracy as value,
        {{ alias }}.ci_low,
        {{ alias }}.ci_high,
        {{ alias }}.accuracy_itt,
        {{ alias }}.itt_ci_low,
        {{ alias }}.itt_ci_high
{%- endmacro %}


{#- A RESULT_COLUMNS stats row as a papers cell: its estimate as `value` with n, interval,
    test and flags. -#}
{% macro stat_cell_columns() -%}
    n,
        estimate as value,
        ci_low,
        ci_high,
        statistic,
        p_value,
        below_min_n,
        detail
{%- endmacro %}
