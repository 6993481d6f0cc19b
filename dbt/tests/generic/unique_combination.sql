{#- Passes when no two rows of the model share the same values of all the given columns
    (nulls compare equal, so a null in a key column still counts as a value). -#}
{% test unique_combination(model, combination_of_columns) %}
    {%- set columns = combination_of_columns | join(', ') -%}
with grouped as (
    select
        {{ columns }},
        count(*) as n_rows
    from {{ model }}
    group by {{ columns }}
)

select *
from grouped
where n_rows > 1
{% endtest %}
