{#- Design effect of a proportion successes / trials whose trials come in clusters (the images
    of one identity): deff = v_cluster / v_binomial, where v_cluster is the cluster-robust
    (sandwich) variance of the ratio estimator p = sum(y_i) / sum(m_i) over the G clusters,
        v_cluster = G / (G - 1) * sum_i (y_i - p m_i)^2 / n^2    (Rao & Scott 1992; the
    variance statsmodels' OLS gives an intercept-only fit with cov_type='cluster'), and
    v_binomial = p (1 - p) / n. The sum of squares is expanded into per-cell moments:
    sum_i (y_i - p m_i)^2 = sum_yy - 2 p sum_ym + p^2 sum_mm.
    * no identity repeats (G = n): 1 -- the images are the independent units;
    * no variance to estimate (p = 0 or 1, or a single cluster): sum_mm / n, the largest design
      effect these cluster sizes allow (Kish's 1 + (m_w - 1) ICC at ICC = 1), so a cell with no
      errors counts its people, not its images;
    * otherwise the estimate, floored at 1 (Korn & Graubard 1998): clustering never makes a
      result look more certain than the naive binomial one.
    Null when trials = 0. tests/test_dbt_project.py checks it against statsmodels. -#}
{% macro design_effect(successes, trials, n_clusters, sum_yy, sum_ym, sum_mm) -%}
    {%- set s = 'cast(' ~ successes ~ ' as double)' -%}
    {%- set n = 'cast(' ~ trials ~ ' as double)' -%}
    {%- set g = 'cast(' ~ n_clusters ~ ' as double)' -%}
    {%- set p = '(' ~ s ~ ' / ' ~ n ~ ')' -%}
    case
        when {{ trials }} = 0 then null
        when {{ n_clusters }} >= {{ trials }} then 1.0
        when {{ n_clusters }} < 2 or {{ successes }} = 0 or {{ successes }} = {{ trials }}
            then cast({{ sum_mm }} as double) / {{ n }}
        else greatest(1.0, {{ g }} / ({{ g }} - 1)
            * ({{ sum_yy }} - 2 * {{ p }} * {{ sum_ym }} + {{ p }} * {{ p }} * {{ sum_mm }})
            / ({{ n }} * {{ p }} * (1 - {{ p }})))
    end
{%- endmacro %}

{#- Per-cell moments of per-cluster counts: from a relation with the `keys` columns, a
    `cluster_id`, `m` (trials of the cluster) and `y` (its successes), one row per cell with
    n_clusters (clusters with a trial), sum_yy, sum_ym and sum_mm (for design_effect). -#}
{% macro cluster_moments(relation, keys) -%}
    select
        {{ keys | join(', ') }},
        count(*) filter (where m > 0) as n_clusters,
        sum(cast(y as double) * y) as sum_yy,
        sum(cast(y as double) * m) as sum_ym,
        sum(cast(m as double) * m) as sum_mm
    from {{ relation }}
    group by {{ keys | join(', ') }}
{%- endmacro %}
