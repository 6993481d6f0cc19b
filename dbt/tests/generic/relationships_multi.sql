{#- Multi-column foreign key: every row of the model whose key columns are all non-null has a
    matching row in `to` on all the column pairs (columns[i] = field[i]). -#}
{% test relationships_multi(model, columns, to, fields) %}
    {%- if columns | length != fields | length -%}
        {{ exceptions.raise_compiler_error("relationships_multi: columns and fields must have the same length") }}
    {%- endif -%}
with child as (
    select distinct {{ columns | join(', ') }}
    from {{ model }}
    where {% for c in columns %}{{ c }} is not null{% if not loop.last %} and {% endif %}{% endfor %}
),

parent as (
    select distinct {{ fields | join(', ') }}
    from {{ to }}
)

select child.*
from child
left join parent
    on {% for c in columns %}child.{{ c }} = parent.{{ fields[loop.index0] }}{% if not loop.last %} and {% endif %}{% endfor %}
where parent.{{ fields[0] }} is null
{% endtest %}
