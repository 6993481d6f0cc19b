{#- Passes when a papers.* model shows every cell the seed published_values holds for it (as a
    'warehouse and paper' or 'paper only' row), and shows each with difference =
    value - published_value wherever both exist and are the same quantity (`compared`: a SQL
    condition, e.g. 'same_quantity' in papers.tae_table6; elsewhere every row), and no
    difference where they are not. -#}
{% test shows_every_published_cell(model, papers_model, compared='true') %}

with

published as (

    select published_id from {{ ref('published_values') }}
    where papers_model = '{{ papers_model }}'

),

missing as (

    select published_id, 'not shown' as problem
    from published
    where published_id not in (select published_id from {{ model }} where published_id is not null)

),

wrong_difference as (

    select published_id, 'difference is not value - published_value' as problem
    from {{ model }}
    where value is not null and published_value is not null
        and ({{ compared }})
        and (difference is null or abs(difference - (value - published_value)) > 1e-12)

),

difference_of_different_quantities as (

    select published_id, 'difference shown between different quantities' as problem
    from {{ model }}
    where not coalesce({{ compared }}, false) and difference is not null

)

select * from missing
union all
select * from wrong_difference
union all
select * from difference_of_different_quantities

{% endtest %}
