{#- One row per grouping of each row of `relation` (a CTE or relation with race and gender):
    'all' (every row), 'race', 'gender' and 'race_gender' ("<race> <gender>"), as columns
    `grouping` and `group_value`. A row whose attribute is null is left out of that grouping
    only. The single definition of the demographic groupings every mart reports by. -#}
{% macro unpivot_groupings(relation) %}
    select *, 'all' as grouping, 'all' as group_value from {{ relation }}

    union all

    select *, 'race' as grouping, race as group_value from {{ relation }}
    where race is not null

    union all

    select *, 'gender' as grouping, gender as group_value from {{ relation }}
    where gender is not null

    union all

    select *, 'race_gender' as grouping, race || ' ' || gender as group_value from {{ relation }}
    where race is not null and gender is not null
{% endmacro %}
