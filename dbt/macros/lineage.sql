{#- One `union all` of the scopes of the stats tables `tables` that exist (lineage.stat_lineage):
    per stats row its id, headline numbers, model keys and the images it rests on, as
    grouping + group_values (null = every group) + scope_emotion (null = every emotion).
    Columns are read from each table, so a table's extras (group_a / group_b, true_emotion,
    dimension) are used where present. Nothing exists yet: an empty relation. -#}
{% macro lineage_scopes(tables) -%}
    {%- set parts = [] -%}
    {%- if execute -%}
    {%- for table_name in tables -%}
        {%- set relation = source('stats', table_name) -%}
        {%- set found = adapter.get_relation(database=relation.database, schema=relation.schema,
                                             identifier=relation.identifier) -%}
        {%- if found is not none -%}
            {%- set cols = adapter.get_columns_in_relation(found) | map(attribute='name') | list -%}
            {%- if 'model' in cols and 'model_version' in cols and 'protocol' in cols -%}
                {%- do parts.append(lineage_scope(table_name, found, cols)) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- endif -%}
    {%- if parts -%}
    {{ parts | join('\n    union all by name\n    ') }}
    {%- else -%}
    select
        cast(null as varchar) as stats_table, cast(null as varchar) as stat_row_id,
        cast(null as varchar) as analysis, cast(null as varchar) as measure, cast(null as varchar) as dimension,
        cast(null as varchar) as model, cast(null as varchar) as model_version, cast(null as varchar) as dataset,
        cast(null as varchar) as protocol, cast(null as varchar) as subset_kind, cast(null as varchar) as subset,
        cast(null as double) as estimate, cast(null as double) as ci_low, cast(null as double) as ci_high,
        cast(null as double) as p_value, cast(null as double) as p_adjusted, cast(null as varchar) as family,
        cast(null as varchar) as grouping, cast(null as varchar[]) as group_values,
        cast(null as varchar) as scope_emotion
    where false
    {%- endif -%}
{%- endmacro %}


{#- The scope select of one stats table (see lineage_scopes); `cols` are its column names. -#}
{% macro lineage_scope(table_name, relation, cols) -%}
    {%- set is_pair = 'group_a' in cols and 'group_b' in cols -%}
    {%- set kind = 'stat.grouping' if 'grouping' in cols else 'stat.subset_kind' -%}
    {#- the configured groupings (statistics.groupings: age bins, extra columns, intersections too) -#}
    {%- set groupings = "('" ~ (var('groupings', ['race', 'gender', 'race_gender']) | join("', '")) ~ "')" -%}
    select
        '{{ table_name }}' as stats_table,
        md5(cast(stat as varchar)) as stat_row_id,
        {{ "stat.analysis" if 'analysis' in cols else "'" ~ table_name ~ "'" }} as analysis,
        {{ "stat.measure" if 'measure' in cols else "'error_rate_difference'" }} as measure,
        {{ "cast(stat.dimension as varchar)" if 'dimension' in cols else "cast(null as varchar)" }} as dimension,
        stat.model,
        stat.model_version,
        stat.dataset,
        stat.protocol,
        {{ kind }} as subset_kind,
        {{ "stat.subset" if 'subset' in cols else "stat.group_a || ' vs ' || stat.group_b" }} as subset,
        {{ "stat.estimate" if 'estimate' in cols else "stat.difference" }} as estimate,
        stat.ci_low,
        stat.ci_high,
        stat.p_value,
        stat.p_adjusted,
        stat.family,
        case when {{ kind }} in {{ groupings }} then {{ kind }} else 'all' end as grouping,
        {%- if is_pair %}
        case when {{ kind }} in {{ groupings }} then [stat.group_a, stat.group_b] end as group_values,
        {%- else %}
        case when {{ kind }} in {{ groupings }} then [stat.subset] end as group_values,
        {%- endif %}
        {%- if 'true_emotion' in cols %}
        nullif(stat.true_emotion, 'all') as scope_emotion
        {%- else %}
        case when {{ kind }} = 'emotion' then stat.subset end as scope_emotion
        {%- endif %}
    from {{ relation }} as stat
    where coalesce(stat.model, '') not in ('', 'human')
        and {{ kind }} <> 'model_pair'
{%- endmacro %}
