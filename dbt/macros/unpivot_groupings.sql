{#- One row per grouping of each row of `relation` (a CTE or relation with race, gender, age
    and extra): 'all' (every row) and each grouping of var('groupings') as columns `grouping`
    and `group_value`. A row whose attribute is null is left out of that grouping only.
    The single definition of the demographic groupings: marts and statistics (which read
    int_answers_with_groups and the marts) report by exactly these; benchmark.yaml
    `statistics.groupings` / `statistics.bins` reach it through inference.config.dbt_vars.
    A grouping is
    * race, gender, age, or any other name: the key of the image's `extra` (a manifest or kind
      column, e.g. skin_luminance), as text;
    * binned when var('grouping_bins') has edges for it: [[low, high, label], ...], the value
      in [low, high) gets the label (age needs bins);
    * 'race_gender' (= race*gender) or 'a*b' for any two of the above: "<a> <b>". -#}
{% macro grouping_value(name) -%}
    {%- set bins = var('grouping_bins', {}) -%}
    {%- if name in ('race', 'gender', 'age') -%}
        {%- set raw = name -%}
    {%- else -%}
        {%- set raw = "json_extract_string(extra, '$.\"" ~ name ~ "\"')" -%}
    {%- endif -%}
    {%- if name in bins -%}
    case
        {%- for low, high, label in bins[name] %}
        when try_cast({{ raw }} as double) >= {{ low }} and try_cast({{ raw }} as double) < {{ high }} then '{{ label }}'
        {%- endfor %}
    end
    {%- elif name == 'age' -%}
        {{ exceptions.raise_compiler_error("var('groupings'): 'age' needs bins (statistics.bins.age)") }}
    {%- else -%}
    cast({{ raw }} as varchar)
    {%- endif -%}
{%- endmacro %}

{% macro grouping_expression(grouping) -%}
    {%- set parts = ['race', 'gender'] if grouping == 'race_gender' else grouping.split('*') -%}
    {%- if parts | length > 2 -%}
        {{ exceptions.raise_compiler_error("var('groupings'): '" ~ grouping ~ "' intersects more than two attributes") }}
    {%- endif -%}
    {%- for part in parts -%}
        ({{ grouping_value(part) }}){{ " || ' ' || " if not loop.last }}
    {%- endfor -%}
{%- endmacro %}

{% macro unpivot_groupings(relation) %}
    {%- set groupings = var('groupings', ['race', 'gender', 'race_gender']) -%}
    select *, 'all' as grouping, 'all' as group_value from {{ relation }}
    {%- for grouping in groupings %}

    union all

    select * from (
        select *, '{{ grouping }}' as grouping, {{ grouping_expression(grouping) }} as group_value
        from {{ relation }}
    )
    where group_value is not null
    {%- endfor %}
{% endmacro %}
