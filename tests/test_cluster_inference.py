"""Cluster-aware comparisons (issue 22): the Rao-Scott test on effective counts.

* a null simulation with a strong identity effect: the naive z-test rejects far above alpha,
  the cluster-aware one stays near alpha;
* the cluster-aware standard error against an independent method (a cluster bootstrap) and the
  test against statsmodels' GEE (binomial, robust sandwich variance);
* the issue's example: 24/120 vs 8/120 errors concentrated in 6 vs 2 of 30 people.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.stats import fisher_exact

from cluster_support import clustered_errors, null_rejection_rates, person_failures, statsmodels_design_effect
from dagster_project.analysis.clustered import CLUSTER_METHOD, NAIVE_METHOD, comparison, group_cell
from dagster_project.analysis.proportions import pairwise_error_ztests


def _cell(errors: np.ndarray, people: np.ndarray):
    return group_cell(int(errors.sum()), len(errors), len(np.unique(people)),
                      statsmodels_design_effect(errors, people))


@pytest.mark.parametrize(("concentration", "naive_at_least", "cluster_at_most"), [
    (1.5, 0.15, 0.08),  # ICC 0.4; measured (seed 22): naive 0.185, cluster-aware 0.052
    (0.5, 0.25, 0.09),  # ICC 0.67; measured: naive 0.303, cluster-aware 0.067 (60 clusters: mildly liberal)
])
def test_null_with_identity_effect_naive_rejects_often_cluster_aware_near_alpha(
        concentration, naive_at_least, cluster_at_most):
    # 30 people per group, 4 faces each, the same distribution of per-person error rates in both
    # groups (no group difference) with a strong identity effect (beta-binomial ICC = 1 / (1 + a + b)).
    rng = np.random.default_rng(22)

    def p_values():
        a = _cell(*clustered_errors(rng, 30, 4, mean_rate=0.2, icc_concentration=concentration))
        b = _cell(*clustered_errors(rng, 30, 4, mean_rate=0.2, icc_concentration=concentration))
        result = comparison(a, b)
        return None if np.isnan(result["p_value"]) else (result["p_value_naive"], result["p_value"])

    naive_rate, cluster_rate, tested = null_rejection_rates(600, p_values)
    print(f"rejection rate at alpha 0.05 over {tested} null simulations: naive {naive_rate:.3f}, "
          f"cluster-aware {cluster_rate:.3f}")
    assert naive_rate > naive_at_least
    assert 0.02 < cluster_rate < cluster_at_most


def test_cluster_aware_standard_error_matches_a_cluster_bootstrap_and_gee():
    # One data set with unequal cluster sizes (2-6 faces) and an identity effect; the standard
    # error of the difference of error rates from the effective counts (the Wald interval's
    # half-width / z) against resampling people within each group.
    rng = np.random.default_rng(7)
    groups = {}
    for name, rate in (("a", 0.3), ("b", 0.2)):
        sizes = rng.integers(2, 7, size=40)
        person_rates = rng.beta(rate * 2, (1 - rate) * 2, size=40)
        errors = [rng.random(k) < r for k, r in zip(sizes, person_rates)]
        groups[name] = (np.concatenate(errors).astype(int), np.repeat(np.arange(40), sizes))
    cells = {name: _cell(*data) for name, data in groups.items()}
    result = comparison(cells["a"], cells["b"])
    assert result["inference"] == CLUSTER_METHOD
    se_cluster = (result["ci_high"] - result["ci_low"]) / (2 * 1.959963984540054)

    def resample_rate(errors, people):
        per_person = pd.DataFrame({"e": errors, "p": people}).groupby("p")["e"].agg(["sum", "size"]).to_numpy()
        picks = rng.integers(0, len(per_person), size=(4000, len(per_person)))
        return per_person[picks, 0].sum(axis=1) / per_person[picks, 1].sum(axis=1)

    boot = resample_rate(*groups["a"]) - resample_rate(*groups["b"])
    se_boot = boot.std(ddof=1)
    se_naive = (result["ci_high_naive"] - result["ci_low_naive"]) / (2 * 1.959963984540054)
    print(f"SE of the difference: cluster-aware {se_cluster:.4f}, cluster bootstrap {se_boot:.4f}, naive {se_naive:.4f}")
    assert abs(se_cluster / se_boot - 1) < 0.08
    assert se_cluster > se_naive * 1.1  # the identity effect is real here, and visible

    # GEE: binomial, logit link, independence working correlation, robust (sandwich) variance
    y = np.concatenate([groups["a"][0], groups["b"][0]])
    x = sm.add_constant(np.r_[np.ones(len(groups["a"][0])), np.zeros(len(groups["b"][0]))])
    people = np.r_[groups["a"][1], groups["b"][1] + 1000]
    gee = sm.GEE(y, x, groups=people, family=sm.families.Binomial(),
                 cov_struct=sm.cov_struct.Independence()).fit()
    print(f"p: Rao-Scott {result['p_value']:.4f}, GEE robust Wald {gee.pvalues[1]:.4f}, naive {result['p_value_naive']:.4f}")
    assert abs(np.log(result["p_value"]) - np.log(gee.pvalues[1])) < np.log(1.5)
    assert result["p_value_naive"] < result["p_value"]


def test_the_issues_example_is_not_significant_once_people_are_counted():
    # 30 people per group, 4 faces each; 6 people of group a and 2 of group b fail on every face.
    a, b = _cell(*person_failures(30, 4, 6)), _cell(*person_failures(30, 4, 2))
    assert (a.count, a.n, b.count, b.n) == (24, 120, 8, 120)
    result = comparison(a, b)
    assert round(result["p_value_naive"], 3) == 0.002  # "today's z-test reports p = 0.002"
    assert result["inference"] == CLUSTER_METHOD
    assert a.design_effect > 4 and b.design_effect > 4  # 30 / 29 * 4 = 4.14: one person ~ one image
    assert result["p_value"] > 0.05
    assert result["ci_low"] < 0 < result["ci_high"] and not (result["ci_low_naive"] < 0)
    # by person (6/30 against 2/30), Fisher's exact test agrees that nothing is shown
    assert round(fisher_exact([[6, 24], [2, 28]])[1], 2) == 0.25
    print(f"issue example: naive p {result['p_value_naive']:.4f}, Rao-Scott p {result['p_value']:.4f}, "
          f"design effects {a.design_effect:.2f} / {b.design_effect:.2f}")


def test_pairwise_ztests_decide_on_the_cluster_aware_values_and_keep_the_naive_ones():
    keys = dict(model="m", model_version="1", dataset="d", protocol="p", grouping="race", true_emotion="all",
                n_images=120, n_answered=120, n=120)
    accuracy = pd.DataFrame([
        {**keys, "group_value": "a", "correct": 96, "n_clusters": 30, "design_effect": 30 / 29 * 4},
        {**keys, "group_value": "b", "correct": 112, "n_clusters": 30, "design_effect": 30 / 29 * 4},
        # a dataset without repeated identities: the naive test decides
        {**keys, "dataset": "e", "group_value": "a", "correct": 96, "n_clusters": 120, "design_effect": 1.0},
        {**keys, "dataset": "e", "group_value": "b", "correct": 112, "n_clusters": 120, "design_effect": 1.0},
    ])
    tests = pairwise_error_ztests(accuracy, groupings=("race",)).set_index("dataset")
    clustered, independent = tests.loc["d"], tests.loc["e"]
    assert clustered["inference"] == CLUSTER_METHOD and not clustered["significant"]
    assert clustered["p_value_naive"] < 0.01 < 0.05 < clustered["p_value"] == clustered["p_adjusted"]
    assert independent["inference"] == NAIVE_METHOD and independent["significant"]
    assert independent["p_value"] == independent["p_value_naive"]


def test_a_zero_lower_rate_gets_a_one_sided_score_bound():
    # 10 vs 0 errors out of 40 images each: no Katz interval exists; the score interval is
    # [2.76, inf). Checked by inverting statsmodels' score test: at the bound the two-sided p is alpha.
    from statsmodels.stats.proportion import test_proportions_2indep
    from dagster_project.analysis.clustered import zero_count_ratio_bound
    low, high = zero_count_ratio_bound(group_cell(10, 40, 40, 1.0), group_cell(0, 40, 40, 1.0), clustered=False)
    assert low == pytest.approx(2.76, abs=0.005) and np.isinf(high)
    at_bound = test_proportions_2indep(10, 40, 0, 40, value=low, method="score", compare="ratio").pvalue
    assert at_bound == pytest.approx(0.05, abs=1e-4)
    # the same counts from 10 people with 4 faces each (design effect 4): the bound counts people
    people = zero_count_ratio_bound(group_cell(10, 40, 10, 4.0), group_cell(0, 40, 10, 4.0), clustered=True)[0]
    assert people == pytest.approx(0.72, abs=0.005)  # 10 vs 0 people of 10: the ratio could be below 1


def test_cells_below_min_n_are_flagged_and_not_tested():
    keys = dict(model="m", model_version="1", dataset="d", protocol="p", grouping="race", true_emotion="all")
    accuracy = pd.DataFrame([{**keys, "group_value": g, "n": n, "correct": c, "n_clusters": n, "design_effect": 1.0}
                             for g, n, c in (("a", 200, 150), ("b", 200, 190), ("c", 6, 0))])
    tests = pairwise_error_ztests(accuracy, groupings=("race",), min_n=10).set_index(["group_a", "group_b"])
    small = tests[tests["below_min_n"]]
    assert len(small) == 2 and small["p_value"].isna().all() and not small["significant"].any()
    assert small["note"].str.startswith("not tested").all()
    assert tests.loc[("a", "b"), "family_m"] == 1 and tests.loc[("a", "b"), "significant"]


def test_the_forest_plot_says_which_intervals_count_people():
    from dagster_project.analysis.figures import pyplot
    from dagster_project.analysis.stat_figures import ratio_forest_axes, ratio_forest_rows
    tests = pd.DataFrame({"model": "m", "subset": ["a vs b", "c vs d"], "estimate": [2.0, 1.5],
                          "ci_low": [1.1, 0.8], "ci_high": [3.6, 2.8], "count_a": [20, 15], "n_a": [100, 100],
                          "count_b": [10, 10], "n_b": [100, 100], "family_m": [2, 2],
                          "inference": [CLUSTER_METHOD, NAIVE_METHOD]})
    fig, ax = pyplot().subplots()
    ratio_forest_axes(ratio_forest_rows(tests), ax)
    assert "1 of 2 intervals count people" in ax.get_xlabel()
    pyplot().close(fig)


def test_all_pairs_at_once_are_proportions_ztest_and_the_wald_interval_pair_by_pair():
    """clustered.comparisons tests every pair in one statsmodels call (test_proportions_2indep,
    score, no correction); each pair's z and p are proportions_ztest's (the test Chhua et al.
    report) and its interval confint_proportions_2indep's, on effective counts where clustered;
    no test where the pooled rate is 0 or 1; one pair alone gives the same row as in a batch."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    from dagster_project.analysis.clustered import comparisons, group_cells

    rng = np.random.default_rng(4)
    n_a, n_b = rng.integers(1, 400, 300), rng.integers(1, 400, 300)
    count_a, count_b = rng.integers(0, n_a + 1), rng.integers(0, n_b + 1)
    count_a[:5], count_b[:5] = 0, 0          # pooled rate 0
    count_a[5:10], count_b[5:10] = n_a[5:10], n_b[5:10]  # pooled rate 1
    clusters_a = np.where(rng.random(300) < 0.5, n_a, np.maximum(n_a // 3, 1)).astype(float)
    deff_a = np.where(clusters_a < n_a, rng.uniform(1.0, 3.0, 300), 1.0)
    a, b = group_cells(count_a, n_a, clusters_a, deff_a), group_cells(count_b, n_b, n_b, None)
    batch = comparisons(a, b)
    assert batch["z"].iloc[:10].isna().all() and batch["ci_low"].iloc[:10].isna().all()
    for i in range(10, 300):
        row = batch.iloc[i]
        clustered = row["inference"] == CLUSTER_METHOD
        assert clustered == (clusters_a[i] < n_a[i])
        d = deff_a[i] if clustered else 1.0
        z, p = proportions_ztest(np.array([count_a[i] / d, count_b[i]]), np.array([n_a[i] / d, n_b[i]]))
        low, high = confint_proportions_2indep(count_a[i] / d, n_a[i] / d, count_b[i], n_b[i], method="wald")
        assert row["z"] == pytest.approx(z, rel=1e-11, abs=1e-12)
        assert row["p_value"] == pytest.approx(p, rel=1e-9, abs=1e-300)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-12)
        z_naive, _ = proportions_ztest(np.array([count_a[i], count_b[i]]), np.array([n_a[i], n_b[i]]))
        assert row["z_naive"] == pytest.approx(z_naive, rel=1e-11, abs=1e-12)
    one = comparisons(group_cells(count_a[[42]], n_a[[42]], clusters_a[[42]], deff_a[[42]]),
                      group_cells(count_b[[42]], n_b[[42]], n_b[[42]], None))
    pd.testing.assert_frame_equal(one, batch.iloc[[42]].reset_index(drop=True), check_exact=True)
