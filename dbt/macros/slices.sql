{#- The evaluated slice (model, model_version, dataset) is a Dagster partition all the way
    through. The partitioned dbt asset builds the slice models (tag `slice`) for one partition
    with `--vars '{"slice": {"model": ..., "model_version": ..., "dataset": ...}}'`: each slice
    model selects only that slice's rows and replaces them (pre-hook delete, then append, in one
    transaction), leaving every other slice's rows untouched. Without the var (a plain
    `dbt build` from the command line) every slice is rebuilt. -#}

{#- The slice of `--vars`, or none: a build of every slice, or a unit test (its fixture rows are
    the whole input, whatever slice the build is for). -#}
{% macro current_slice() -%}
    {%- if model.resource_type == 'unit_test' -%}
    {{ return(none) }}
    {%- endif -%}
    {{ return(var('slice', none)) }}
{%- endmacro %}


{#- SQL predicate on model / model_version / dataset selecting the current slice; `true` when
    there is none. -#}
{% macro slice_predicate() -%}
    {%- set slice = current_slice() -%}
    {%- if slice is none -%}
    true
    {%- else -%}
    (model = {{ sql_literal(slice['model']) }}
        and model_version = {{ sql_literal(slice['model_version']) }}
        and dataset = {{ sql_literal(slice['dataset']) }})
    {%- endif -%}
{%- endmacro %}


{#- `where` / `and` clause keeping only the slice's rows; nothing on a build of every slice. -#}
{% macro slice_filter(keyword='where') -%}
    {%- if current_slice() is not none %}
    {{ keyword }} {{ slice_predicate() }}
    {%- endif %}
{%- endmacro %}


{#- Pre-hook of every slice model: remove the rows the build is about to insert again (the
    slice, or everything on a build of every slice). -#}
{% macro delete_slice() -%}
    {%- if is_incremental() -%}
    delete from {{ this }} where {{ slice_predicate() }}
    {%- endif -%}
{%- endmacro %}


{% macro sql_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
