{#- Chhua et al.'s two-proportion z-tests of misclassification between races (Section 5 text):
    one row per pair of races and measure, all emotions pooled. measure 'z' is in the paper's
    sign convention -- positive when the SECOND group is misclassified more -- the negative of
    stats.error_rate_ztests.z_naive (positive when group_a errs more); 'p_value' is unadjusted
    and naive (images independent), as the paper's; the Holm-adjusted p (cluster-aware where
    identities repeat, see `inference`) and its family ride along on both rows. -#}

with

ztests as (

    select *
    from {{ stats_relation('error_rate_ztests', {
        'model': 'varchar', 'model_version': 'varchar', 'dataset': 'varchar', 'protocol': 'varchar',
        'grouping': 'varchar', 'true_emotion': 'varchar', 'group_a': 'varchar', 'group_b': 'varchar',
        'n_a': 'bigint', 'errors_a': 'bigint', 'error_rate_a': 'double', 'n_b': 'bigint',
        'errors_b': 'bigint', 'error_rate_b': 'double', 'difference': 'double', 'ci_low': 'double',
        'ci_high': 'double', 'z': 'double', 'p_value': 'double', 'p_adjusted': 'double',
        'correction': 'varchar', 'family': 'varchar', 'family_m': 'bigint', 'below_min_n': 'boolean',
        'z_naive': 'double', 'p_value_naive': 'double', 'inference': 'varchar'}) }}
    where grouping = 'race' and true_emotion = 'all'

),

pairs as (

    select
        model,
        model_version,
        dataset,
        protocol,
        'race' as subset_kind,
        group_a || ' vs ' || group_b as subset,
        group_a,
        group_b,
        n_a,
        errors_a,
        error_rate_a,
        n_b,
        errors_b,
        error_rate_b,
        difference as error_rate_difference,
        ci_low as difference_ci_low,
        ci_high as difference_ci_high,
        p_adjusted,
        correction,
        family,
        family_m,
        below_min_n,
        -- the paper's test counts images as independent: its naive z and p (z / p_value are
        -- cluster-aware where identities repeat; `inference` says which decided p_adjusted)
        inference,
        -z_naive as z_paper_sign,
        p_value_naive as p_value

    from ztests

),

cells as (

    select * exclude (z_paper_sign, p_value), 'z' as measure, z_paper_sign as value from pairs
    union all
    select * exclude (z_paper_sign, p_value), 'p_value' as measure, p_value as value from pairs

),

{{ compare_with_published('chhua_race_ztests', 'cells',
       {'subset_kind': 'subset_kind', 'subset': 'subset', 'measure': 'measure'}) }},

final as (

    select * from compared

)

select * from final
