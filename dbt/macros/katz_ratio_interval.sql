{#- Katz log interval for the ratio of two proportions (count_a / n_a) / (count_b / n_b):
    exp(ln ratio -/+ z * sqrt(1/count_a - 1/n_a + 1/count_b - 1/n_b)), rendered as two
    select-list columns `<prefix>_low, <prefix>_high`. Null when a count or a trial count
    is 0. Matches statsmodels.stats.proportion.confint_proportions_2indep(count_a, n_a,
    count_b, n_b, compare='ratio', method='log'). -#}
{% macro katz_ratio_interval(count_a, n_a, count_b, n_b, prefix='ci', z=none) -%}
    {%- set z = z if z is not none else var('ci_z', 1.959963984540054) -%}
    {%- set ca = 'cast(' ~ count_a ~ ' as double)' -%}
    {%- set na = 'cast(' ~ n_a ~ ' as double)' -%}
    {%- set cb = 'cast(' ~ count_b ~ ' as double)' -%}
    {%- set nb = 'cast(' ~ n_b ~ ' as double)' -%}
    {%- set log_ratio = 'ln((' ~ ca ~ ' / ' ~ na ~ ') / (' ~ cb ~ ' / ' ~ nb ~ '))' -%}
    {%- set half = '(cast(' ~ z ~ ' as double) * sqrt(1 / ' ~ ca ~ ' - 1 / ' ~ na ~ ' + 1 / ' ~ cb ~ ' - 1 / ' ~ nb ~ '))' -%}
    {%- set ok = count_a ~ ' > 0 and ' ~ count_b ~ ' > 0 and ' ~ n_a ~ ' > 0 and ' ~ n_b ~ ' > 0' -%}
    case when {{ ok }} then exp({{ log_ratio }} - {{ half }}) end as {{ prefix }}_low,
    case when {{ ok }} then exp({{ log_ratio }} + {{ half }}) end as {{ prefix }}_high
{%- endmacro %}
