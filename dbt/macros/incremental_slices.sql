{#- Incremental rebuilds per evaluated slice (model, model_version, dataset).

    Adding a model version must cost what that version costs, not what the whole warehouse
    holds: the slice models (materialized incremental, delete+insert on the slice key) rebuild
    only the slices whose newest evaluation or dataset ingestion (int_slices.slice_updated_at)
    is newer than what the table holds, and leave every other slice's rows untouched.
    A full refresh (`dbt build --full-refresh`) rebuilds everything, e.g. after a seed changed. -#}

{% macro changed_slices() -%}
    {%- set held_columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
    {%- if 'slice_updated_at' not in held_columns -%}
    {#- a table built before slices were stamped: rebuild every slice once -#}
    select model, model_version, dataset from {{ ref('int_slices') }}
    {%- else -%}
    select slices.model, slices.model_version, slices.dataset
    from {{ ref('int_slices') }} as slices
    left join (
        select model, model_version, dataset, max(slice_updated_at) as slice_updated_at
        from {{ this }}
        group by model, model_version, dataset
    ) as held
        on held.model = slices.model
        and held.model_version = slices.model_version
        and held.dataset = slices.dataset
    where held.slice_updated_at is null
        or slices.slice_updated_at > held.slice_updated_at
    {%- endif -%}
{%- endmacro %}


{#- `where` / `and` clause keeping only the changed slices' rows; nothing on a full build. -#}
{% macro slice_filter(keyword='where') -%}
    {%- if is_incremental() %}
    {{ keyword }} (model, model_version, dataset) in ({{ changed_slices() }})
    {%- endif %}
{%- endmacro %}


{#- The model's last select: its `final` rows stamped with their slice's slice_updated_at,
    which the next incremental run compares against. -#}
{% macro select_with_slice_stamp(cte='final') -%}
    select
        {{ cte }}.*,
        slices.slice_updated_at

    from {{ cte }}

    left join {{ ref('int_slices') }} as slices
        on slices.model = {{ cte }}.model
        and slices.model_version = {{ cte }}.model_version
        and slices.dataset = {{ cte }}.dataset
{%- endmacro %}
