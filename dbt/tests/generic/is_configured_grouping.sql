{#- Every value of the column is 'all' or a grouping of var('groupings') (benchmark.yaml
    statistics.groupings): the groupings are configuration, so the accepted values are too. -#}
{% test is_configured_grouping(model, column_name) %}
{%- set groupings = ['all'] + var('groupings', ['race', 'gender', 'race_gender']) -%}
select {{ column_name }}
from {{ model }}
where {{ column_name }} not in ({% for g in groupings %}'{{ g }}'{{ ', ' if not loop.last }}{% endfor %})
{% endtest %}
