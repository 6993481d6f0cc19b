{#- Wilson score interval for a binomial proportion successes / trials, rendered as two
    select-list columns `<prefix>_low, <prefix>_high`. Null when trials = 0. Matches
    statsmodels.stats.proportion.proportion_confint(successes, trials, method='wilson'). -#}
{% macro wilson_interval(successes, trials, prefix='ci', z=none) -%}
    {%- set z = z if z is not none else var('ci_z', 1.959963984540054) -%}
    {%- set s = 'cast(' ~ successes ~ ' as double)' -%}
    {%- set n = 'cast(' ~ trials ~ ' as double)' -%}
    {%- set zz = 'cast(' ~ z ~ ' as double)' -%}
    {%- set p = '(' ~ s ~ ' / ' ~ n ~ ')' -%}
    {%- set denom = '(1 + ' ~ zz ~ ' * ' ~ zz ~ ' / ' ~ n ~ ')' -%}
    {%- set center = '((' ~ p ~ ' + ' ~ zz ~ ' * ' ~ zz ~ ' / (2 * ' ~ n ~ ')) / ' ~ denom ~ ')' -%}
    {%- set half = '(' ~ zz ~ ' * sqrt(' ~ p ~ ' * (1 - ' ~ p ~ ') / ' ~ n ~ ' + ' ~ zz ~ ' * ' ~ zz ~ ' / (4 * ' ~ n ~ ' * ' ~ n ~ ')) / ' ~ denom ~ ')' -%}
    case when {{ trials }} > 0 then {{ center }} - {{ half }} end as {{ prefix }}_low,
    case when {{ trials }} > 0 then {{ center }} + {{ half }} end as {{ prefix }}_high
{%- endmacro %}
