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

{#- The slices of FER_DBT_SLICE (a JSON list of {"model", "model_version", "dataset"}; one
    object is one slice), or none: a build of every slice, a unit test (its fixture rows are the
    whole input, whatever slice the build is for), or parse time. One invocation builds many
    slices (a backfill, the demo's refresh): dbt starts, and each model and test runs, once. -#}
{% macro current_slices() -%}
    {%- if not execute or model.resource_type == 'unit_test' -%}
    {{ return(none) }}
    {%- endif -%}
    {%- set requested = env_var('FER_DBT_SLICE', '') -%}
    {%- if not requested -%}
    {{ return(none) }}
    {%- endif -%}
    {%- set slices = fromjson(requested) -%}
    {{ return(slices if slices is sequence and slices is not mapping else [slices]) }}
{%- endmacro %}


{#- SQL predicate on model / model_version / dataset selecting the current slices; `true` when
    there are none (every slice). -#}
{% macro slice_predicate() -%}
    {%- set slices = current_slices() -%}
    {%- if slices is none -%}
    true
    {%- else -%}
    (model, model_version, dataset) in (
        {%- for slice in slices -%}
        ({{ sql_literal(slice['model']) }}, {{ sql_literal(slice['model_version']) }}, {{ sql_literal(slice['dataset']) }})
        {%- if not loop.last %}, {% endif -%}
        {%- endfor -%}
    )
    {%- endif -%}
{%- endmacro %}


{#- `where` / `and` clause keeping only the slices' rows; nothing on a build of every slice, and
    nothing on a model's first build (no table yet, a full refresh, or a relation that is still a
    view: a model an older version of the project built as one). That build creates the table
    with every slice's rows; with the filter it would hold only the slices of the run, and every
    other slice would read as having no rows until its next refresh. -#}
{% macro slice_filter(keyword='where') -%}
    {%- if current_slices() is not none and is_incremental() %}
    {{ keyword }} {{ slice_predicate() }}
    {%- endif %}
{%- endmacro %}


{#- Pre-hook of every slice model: remove the rows the build is about to insert again (the
    slices, or everything on a build of every slice). -#}
{% macro delete_slice() -%}
    {%- if is_incremental() -%}
    delete from {{ this }} where {{ slice_predicate() }}
    {%- endif -%}
{%- endmacro %}


{#- Data tests of a slice model check the slices being built, not the whole table (dbt's
    documented override of the relation a generic test reads; the test's own `where` config
    still applies). Every other slice was tested when it was built, and its rows have not
    changed since: only this build replaced rows. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set tested = graph.nodes.get(model.attached_node) if execute and model.attached_node else none -%}
    {%- set slices_only = tested is not none and 'slice' in tested.tags and current_slices() is not none -%}
    {%- if not where and not slices_only -%}
    {{ return(relation) }}
    {%- endif -%}
    {%- set conditions = ([where] if where else []) + ([slice_predicate()] if slices_only else []) -%}
    {%- set filtered -%}
    (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
    {%- endset -%}
    {{ return(filtered) }}
{%- endmacro %}


{% macro sql_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
