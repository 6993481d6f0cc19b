{#- The configured dataset groups (benchmark.yaml `dataset_groups:`, passed as the dbt var
    `dataset_groups`: {group: [dataset, ...]}) as rows (dataset_group, dataset); no rows when
    none is configured. The var is the same for every invocation of one config, so it never
    defeats partial parsing. -#}
{% macro dataset_group_members() -%}
    {%- set groups = var('dataset_groups', {}) -%}
    {%- set rows = [] -%}
    {%- for group, members in groups | dictsort -%}
        {%- for member in members -%}
            {%- do rows.append('(' ~ sql_literal(group) ~ ', ' ~ sql_literal(member) ~ ')') -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if rows -%}
    select * from (values {{ rows | join(', ') }}) as dataset_groups (dataset_group, dataset)
    {%- else -%}
    select null::varchar as dataset_group, null::varchar as dataset where false
    {%- endif -%}
{%- endmacro %}
