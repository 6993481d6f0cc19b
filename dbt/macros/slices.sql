{#- The evaluated slice (model, model_version, dataset) is a Dagster partition all the way
    through. The partitioned dbt asset builds the slice models (tag `slice`) for one partition
    with the slice as JSON in the dbt process's environment,
    `FER_DBT_SLICE='{"model": ..., "model_version": ..., "dataset": ...}'`: each slice model
    selects only that slice's rows and replaces them (pre-hook delete, then append, in one
    transaction), leaving every other slice's rows untouched. Without it (a plain `dbt build`
    from the command line) every slice is rebuilt.

    Why not `--vars`: dbt discards its saved parse whenever the command-line vars change, so a
    slice var re-parsed the whole project on every slice build. The slice is read only while
    executing (`execute`), never while parsing: parsing does not depend on it (the filter adds
    no ref or source), so every slice build reuses the last parse. -#}

{#- The slice of FER_DBT_SLICE, or none: a build of every slice, a unit test (its fixture rows
    are the whole input, whatever slice the build is for), or parse time. -#}
{% macro current_slice() -%}
    {%- if not execute or model.resource_type == 'unit_test' -%}
    {{ return(none) }}
    {%- endif -%}
    {%- set requested = env_var('FER_DBT_SLICE', '') -%}
    {{ return(fromjson(requested) if requested else none) }}
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
