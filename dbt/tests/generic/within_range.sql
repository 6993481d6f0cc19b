{#- Passes when every non-null value of the column lies in [low, high]. -#}
{% test within_range(model, column_name, low, high) %}
select *
from {{ model }}
where {{ column_name }} < {{ low }} or {{ column_name }} > {{ high }}
{% endtest %}
