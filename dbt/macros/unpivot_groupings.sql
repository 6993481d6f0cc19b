{#- One row per grouping of each row of `relation` (a CTE or relation with race and gender):
    'all' (every row) and each grouping of var('groupings') -- 'race', 'gender' and
    'race_gender' ("<race> <gender>") -- as columns `grouping` and `group_value`. A row whose
    attribute is null is left out of that grouping only. The single definition of the
    demographic groupings: marts and statistics (which read int_answers_with_groups and the
    marts) report by exactly these; benchmark.yaml `statistics.groupings` reaches it through
    inference.config.dbt_vars. -#}
{% macro unpivot_groupings(relation) %}
    {%- set groupings = var('groupings', ['race', 'gender', 'race_gender']) -%}
    {%- set known = {
        'race': ('race', 'race is not null'),
        'gender': ('gender', 'gender is not null'),
        'race_gender': ("race || ' ' || gender", 'race is not null and gender is not null'),
    } -%}
    {%- for grouping in groupings if grouping not in known -%}
        {{ exceptions.raise_compiler_error("var('groupings'): unknown grouping '" ~ grouping ~ "'; use race, gender, race_gender") }}
    {%- endfor %}
    select *, 'all' as grouping, 'all' as group_value from {{ relation }}
    {%- for grouping in groupings %}

    union all

    select *, '{{ grouping }}' as grouping, {{ known[grouping][0] }} as group_value from {{ relation }}
    where {{ known[grouping][1] }}
    {%- endfor %}
{% endmacro %}
