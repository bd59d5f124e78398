"""The paired statistics against cases worked by hand or by an independent library (scipy,
statsmodels), each on data where the plausible wrong formula gives another answer."""
import json
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import precision_recall_fscore_support
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from classweights.evaluation import seed_metrics, summarise_seeds
from classweights.report import summary_markdown
from classweights.statistics import (NO_TEST, NOT_COMPUTABLE, borderline_reasons, compare_arms, compare_metrics,
                                     confidence_label, excludes_zero, headline_comparison, mcnemar_exact,
                                     paired_difference, seeds_to_settle, sign_flip_p, verdict)
from tools.sandbox import shipped_params


def recalls_shifted(steps, seeds):
    """Per-seed recalls on 100 test images: the weighted arm finds `steps` more of them. As
    real recalls do, the float differences carry noise of ~1e-16 (0.01 vs 0.010000000000000009)."""
    found = np.array([80, 56, 2, 14, 28, 3, 5, 9][:seeds])
    return (found + np.asarray(steps)) / 100, found / 100


def test_paired_difference_matches_a_hand_worked_case():
    # differences 0.02, 0.02, 0.01: mean 1/60, sd = sqrt(((1/300)^2 * 2 + (2/300)^2) / 2) = 0.0057735
    # t = (1/60) / (0.0057735 / sqrt 3) = 5.0; two-sided p with 2 df = 0.03775; t(0.975, 2) = 4.3027
    d = paired_difference([0.92, 0.94, 0.93], [0.90, 0.92, 0.92], alpha=0.05)
    assert d["mean"] == pytest.approx(1 / 60)
    assert d["sd"] == pytest.approx(0.0057735, abs=1e-6)
    assert d["p_ttest"] == pytest.approx(0.03775, abs=1e-4)
    half = 4.302653 * 0.0057735 / np.sqrt(3)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((1 / 60 - half, 1 / 60 + half), abs=1e-6)
    assert d["differences"] == [0.02, 0.02, 0.01]  # rounded: not 0.020000000000000018
    # sign flips: of the 8 patterns of (±0.02, ±0.02, ±0.01) only +++ and −−− reach |sum| = 0.05
    assert d["p_signflip"] == 2 / 8
    assert d["p_verdict"] == 2 / 8  # the larger of the two
    assert "p_wilcoxon" not in d
    assert verdict(d, 0.05, "p_ttest") == "better"
    assert verdict(d, 0.05) == "no significant difference"  # three seeds can never pass the sign-flip test
    assert verdict(d, 0.3) == "better"
    assert verdict(d, 0.01, "p_ttest") == "no significant difference"


@pytest.mark.parametrize("seeds, p, verdict_at_5_percent", [
    (2, 2 / 4, "no significant difference"),
    (5, 2 / 32, "no significant difference"),  # 0.0625: five seeds cannot reach 0.05
    (8, 2 / 256, "better"),
])
def test_identical_shifts_have_no_t_test_and_the_sign_flip_p_floor(seeds, p, verdict_at_5_percent):
    weighted, unweighted = recalls_shifted([1] * seeds, seeds)  # every seed gains one image in 100
    assert len(set(weighted - unweighted)) > 1  # float noise: the differences are not bit-equal
    d = paired_difference(weighted, unweighted, alpha=0.05)
    assert d["differences"] == [0.01] * seeds
    assert d["sd"] == 0 and d["ci_low"] == d["ci_high"] == d["mean"] == pytest.approx(0.01)
    assert d["p_ttest"] is None  # t = 0.01 / 0: undefined, never "p = 0"
    assert d["p_signflip"] == d["p_verdict"] == p
    assert verdict(d, 0.05) == verdict_at_5_percent


def test_zero_spread_has_sd_exactly_zero_even_where_the_mean_is_inexact():
    # three shifts of 0.1: the float mean is 0.10000000000000002, so numpy's sd would be 1.7e-17
    assert np.std([0.1] * 3, ddof=1) > 0
    d = paired_difference([0.9, 0.8, 0.7], [0.8, 0.7, 0.6], alpha=0.05)
    assert d["sd"] == 0 and d["ci_low"] == d["ci_high"] == d["mean"] and d["p_ttest"] is None


def test_identical_losses_over_eight_seeds_are_worse():
    weighted, unweighted = recalls_shifted([-2] * 8, 8)
    d = paired_difference(weighted, unweighted, alpha=0.05)
    assert d["p_signflip"] == 2 / 256 and verdict(d, 0.05) == "worse"


def test_shifts_equal_up_to_1e_17_are_a_tie_not_a_certainty():
    weighted = 0.01 + np.array([0, 1e-17, -1e-17, 2e-17, 0])
    assert np.std(weighted, ddof=1) > 0  # unrounded, the t-test would give p ~ 1e-16
    d = paired_difference(weighted, np.zeros(5), alpha=0.05)
    assert d["sd"] == 0 and d["p_ttest"] is None
    assert d["p_signflip"] == 2 / 32
    assert verdict(d, 0.05) == "no significant difference"


def test_one_seed_gaining_two_images_the_others_one():
    # differences 0.02, 0.01 x 4: mean 0.012, sd 0.004472, t = 0.012 / (0.004472 / sqrt 5) = 6.0,
    # two-sided p with 4 df = 0.00388; the sign-flip test still says 2/32
    d = paired_difference([0.82, 0.71, 0.61, 0.91, 0.51], [0.80, 0.70, 0.60, 0.90, 0.50], alpha=0.05)
    assert d["sd"] == pytest.approx(0.004472136) and d["p_ttest"] == pytest.approx(0.00388, abs=1e-5)
    assert d["p_signflip"] == d["p_verdict"] == 2 / 32
    assert verdict(d, 0.05, "p_ttest") == "better" and verdict(d, 0.05) == "no significant difference"


def test_a_tiny_but_real_spread_still_needs_the_sign_flip_test():
    # one seed off by 1e-8 (above the rounding): t is huge and its p tiny, the sign-flip p is 2/32
    d = paired_difference([0.01, 0.01, 0.01, 0.01, 0.01 + 1e-8], np.zeros(5), alpha=0.05)
    assert d["p_ttest"] < 1e-10 and d["p_signflip"] == 2 / 32 and d["p_verdict"] == 2 / 32
    assert verdict(d, 0.05) == "no significant difference"


@pytest.mark.parametrize("seeds", [2, 6])
def test_all_zero_differences_give_p_one_and_no_difference(seeds):
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4][:seeds]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero noise in the stage's log
        d = paired_difference(scores, list(scores), alpha=0.05)
    assert d["mean"] == 0 and d["sd"] == 0 and d["ci_low"] == d["ci_high"] == 0
    assert d["p_ttest"] is None and d["p_signflip"] == 1.0 and d["p_verdict"] == 1.0
    if seeds >= 6:
        assert d["p_wilcoxon"] == 1.0
    assert verdict(d, 0.05) == "no significant difference"


def test_nan_is_not_computable_and_writes_null():
    d = paired_difference([0.9, np.nan, 0.8], [0.8, 0.7, 0.7], alpha=0.05)
    assert d == {"n_seeds": 3, "mean": None, "differences": [pytest.approx(0.1), None, pytest.approx(0.1)]}
    assert verdict(d, 0.05) == NOT_COMPUTABLE
    assert json.loads(json.dumps(d, allow_nan=False))["differences"][1] is None
    assert verdict(paired_difference([np.inf], [0.5], alpha=0.05), 0.05) == NOT_COMPUTABLE


def test_sign_flip_p_against_scipy_permutation_test():
    # mixed signs: p is the share of sign patterns with |sum| >= |0.08| (scipy enumerates them too)
    d = np.array([0.03, -0.01, 0.02, 0.04, 0.01, -0.02, 0.05])
    exact = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
    assert sign_flip_p(d) == pytest.approx(exact) == pytest.approx(22 / 128)


def test_sign_flip_counts_ties_with_the_observed_sum():
    # recalls on 1,000 images, observed sum 0.01. Flipping a subset S gives 0.01 - 2 sum(S), which
    # reaches |0.01| when sum(S) <= 0 or >= 0.01: 10 of the 16 subsets, four of them by an exact
    # tie (S = {}, {0.001, 0.004, -0.005}, {0.01}, all) that float noise would break
    assert sign_flip_p([0.001, 0.004, -0.005, 0.01]) == 10 / 16
    assert sign_flip_p([0.001] * 8) == 2 / 256


def test_sign_flip_above_sixteen_seeds_draws_patterns_and_stays_close_to_exact():
    d = np.array([0.02, 0.01, -0.01, 0.03, 0.0, 0.01, 0.02, -0.02, 0.01, 0.01, 0.0, 0.02, -0.01, 0.01, 0.03,
                  -0.01, 0.02])
    exact = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
    p = sign_flip_p(d)
    assert p == pytest.approx(exact, abs=0.01) and p != exact  # drawn, within Monte Carlo error
    assert sign_flip_p(d) == p == 3444 / (2 ** 16 + 1)  # drawn with a fixed seed: the same p every run
    assert sign_flip_p(np.full(20, 0.01)) == 1 / (2 ** 16 + 1)  # never 0: the observed pattern counts
    assert sign_flip_p(np.full(16, 0.01)) == 2 / 2 ** 16  # 16 seeds are still enumerated


def test_wilcoxon_from_six_seeds():
    # six positive differences with distinct sizes: exact two-sided p = 2 / 2^6 = 0.03125
    d = paired_difference([1.1, 1.2, 1.3, 1.4, 1.5, 1.6], [1.0] * 6, alpha=0.05)
    assert d["p_wilcoxon"] == pytest.approx(0.03125)


def test_wilcoxon_ranks_rounded_differences_so_ties_are_ties():
    weighted = [0.70, 0.74, 0.84, 0.91, 0.53, 0.57, 0.86]
    unweighted = [0.71, 0.73, 0.83, 0.92, 0.51, 0.56, 0.87]
    raw = np.subtract(weighted, unweighted)
    rounded = np.round(raw, 9)  # -0.01 x3, +0.01 x3, +0.02
    d = paired_difference(weighted, unweighted, alpha=0.05)
    # six tied |0.01| share rank 3.5, 0.02 has rank 7: W+ = 17.5; 98 of the 128 sign patterns are
    # at least as far from the mean 14
    assert d["p_wilcoxon"] == pytest.approx(stats.wilcoxon(rounded).pvalue) == pytest.approx(98 / 128)
    assert stats.wilcoxon(raw).pvalue == pytest.approx(0.84375)  # float noise broke the ties


def test_verdict_needs_the_interval_to_exclude_zero():
    # all six differences positive, so the Wilcoxon p is 2/64 < 0.05, but the outlier makes the
    # t interval [-1.27, 2.99]: no verdict of "better" from the Wilcoxon p alone
    d = paired_difference([0.01, 0.02, 0.03, 0.04, 0.05, 5.0], [0.0] * 6, alpha=0.05)
    assert d["p_wilcoxon"] == pytest.approx(2 / 64)
    assert d["ci_low"] < 0 < d["ci_high"]
    assert verdict(d, 0.05, "p_wilcoxon") == "no significant difference"
    assert verdict({**d, "ci_low": 0.001}, 0.05, "p_wilcoxon") == "better"
    # an interval that touches 0, or straddles it with both ends below 1, does not exclude it
    assert verdict({**d, "ci_low": 0.0}, 0.05, "p_wilcoxon") == "no significant difference"
    assert verdict({**d, "ci_low": -0.01, "ci_high": 0.05}, 0.05, "p_wilcoxon") == "no significant difference"
    assert verdict({**d, "mean": -0.5, "ci_low": -1.0, "ci_high": 0.0}, 0.05, "p_wilcoxon") == \
        "no significant difference"
    assert verdict({**d, "mean": -1.0, "ci_low": -2.0, "ci_high": -0.001}, 0.05, "p_wilcoxon") == "worse"


def test_verdict_needs_p_below_alpha():
    d = paired_difference([0.95, 0.80, 0.99, 0.97, 0.96, 0.98], [0.90] * 6, alpha=0.05)
    assert d["ci_low"] < 0 < d["ci_high"] and d["p_verdict"] > 0.05
    assert verdict({**d, "ci_low": 0.001}, 0.05) == "no significant difference"


def test_p_equal_to_alpha_is_not_below_it():
    weighted, unweighted = recalls_shifted([1] * 5, 5)
    d = paired_difference(weighted, unweighted, alpha=0.0625)
    assert d["p_verdict"] == 0.0625 and verdict(d, 0.0625) == "no significant difference"


def test_worse_is_reported():
    d = paired_difference([0.80, 0.81, 0.79, 0.80, 0.78, 0.80], [0.90, 0.92, 0.91, 0.90, 0.91, 0.90], alpha=0.05)
    assert d["p_signflip"] == 2 / 64
    assert verdict(d, 0.05) == "worse"


def test_one_seed_gives_no_test_and_no_p_value():
    d = paired_difference([0.9], [0.8], alpha=0.05)
    assert d == {"n_seeds": 1, "mean": pytest.approx(0.1), "differences": [pytest.approx(0.1)]}
    assert verdict(d, 0.05) == NO_TEST


# Ten seeds of four classes' recalls (steps of 1/100). Their verdict p-values are 0.066, 0.0078,
# 0.0156 and 0.031: Holm passes two, Bonferroni one and Benjamini-Hochberg three at 0.05.
FAMILY_WEIGHTED = [[0.67, 0.68, 0.76, 0.76, 0.75, 0.85, 0.76, 0.84, 0.6, 0.86],
                   [0.72, 0.68, 0.61, 0.88, 0.87, 0.66, 0.77, 0.68, 0.88, 0.7],
                   [0.85, 0.67, 0.82, 0.71, 0.75, 0.82, 0.69, 0.66, 0.86, 0.69],
                   [0.83, 0.81, 0.89, 0.75, 0.75, 0.91, 0.62, 0.61, 0.7, 0.63]]
FAMILY_UNWEIGHTED = [[0.68, 0.67, 0.72, 0.77, 0.74, 0.82, 0.73, 0.83, 0.6, 0.84],
                     [0.71, 0.66, 0.6, 0.85, 0.86, 0.65, 0.77, 0.68, 0.87, 0.67],
                     [0.82, 0.68, 0.81, 0.71, 0.71, 0.8, 0.67, 0.65, 0.83, 0.66],
                     [0.81, 0.78, 0.87, 0.72, 0.76, 0.89, 0.62, 0.61, 0.69, 0.62]]


def test_holm_adjusts_the_family_as_statsmodels_does():
    names = ["recall.0", "recall.1", "recall.2", "recall.3"]
    results = compare_metrics(dict(zip(names, FAMILY_WEIGHTED)), dict(zip(names, FAMILY_UNWEIGHTED)), 0.05,
                              family=names)
    raw = [results[n]["p_verdict"] for n in names]
    assert raw == pytest.approx([68 / 1024, 8 / 1024, 16 / 1024, 32 / 1024])
    reject = {m: multipletests(raw, alpha=0.05, method=m)[0].tolist() for m in ("holm", "bonferroni", "fdr_bh")}
    assert reject == {"holm": [False, True, True, False], "bonferroni": [False, True, False, False],
                      "fdr_bh": [False, True, True, True]}
    assert [results[n]["p_holm"] for n in names] == pytest.approx(multipletests(raw, method="holm")[1])
    assert [results[n]["verdict"] == "better" for n in names] == reject["holm"]


def test_outside_the_family_the_raw_p_decides():
    names = ["recall.0", "recall.1", "recall.2", "recall.3"]
    results = compare_metrics(dict(zip(names, FAMILY_WEIGHTED)), dict(zip(names, FAMILY_UNWEIGHTED)), 0.05)
    assert all("p_holm" not in r for r in results.values())
    assert [r["verdict"] for r in results.values()] == ["no significant difference", "better", "better", "better"]


def test_a_not_computable_metric_is_left_out_of_the_family():
    names = ["recall.0", "recall.1", "recall.2", "recall.3"]
    weighted = dict(zip(names, FAMILY_WEIGHTED))
    weighted["recall.0"] = [np.nan] * 10
    results = compare_metrics(weighted, dict(zip(names, FAMILY_UNWEIGHTED)), 0.05, family=names)
    assert results["recall.0"]["verdict"] == NOT_COMPUTABLE and "p_holm" not in results["recall.0"]
    three = [results[n]["p_verdict"] for n in names[1:]]
    assert [results[n]["p_holm"] for n in names[1:]] == pytest.approx(multipletests(three, method="holm")[1])
    json.dumps(results, allow_nan=False)  # raises on a bare NaN


def test_mcnemar_counts_the_images_only_one_arm_gets_right():
    y = np.zeros(20, int)
    weighted = np.zeros(20, int)
    unweighted = np.zeros(20, int)
    weighted[:2] = 1     # images 0, 1: only unweighted right
    unweighted[2:10] = 1  # images 2..9: only weighted right
    both_wrong = 19
    weighted[both_wrong] = unweighted[both_wrong] = 1
    result = mcnemar_exact(y, weighted, unweighted)
    assert result["only_arm_right"] == 8 and result["only_baseline_right"] == 2
    # exact: 2 * P(X <= 2), X ~ Binomial(10, 1/2) = 2 * 56 / 1024; the chi-square versions give
    # 0.114 (continuity-corrected) and 0.058
    assert result["p_value"] == pytest.approx(112 / 1024)
    table = [[9, 2], [8, 1]]
    assert all(result["p_value"] != pytest.approx(mcnemar(table, exact=False, correction=c).pvalue, abs=1e-3)
               for c in (True, False))


@pytest.mark.parametrize("only_arm, only_baseline", [(8, 2), (3, 9), (0, 5), (7, 7), (1, 0)])
def test_mcnemar_agrees_with_statsmodels_exact_test(only_arm, only_baseline):
    y = np.zeros(only_arm + only_baseline + 3, int)
    arm, baseline = y.copy(), y.copy()
    arm[only_arm:only_arm + only_baseline] = 1  # images only the baseline gets right
    baseline[:only_arm] = 1                     # images only the arm gets right
    arm[-1] = baseline[-1] = 1                  # one image both get wrong
    result = mcnemar_exact(y, arm, baseline)
    table = [[2, only_baseline], [only_arm, 1]]
    assert (result["only_arm_right"], result["only_baseline_right"]) == (only_arm, only_baseline)
    assert result["p_value"] == pytest.approx(mcnemar(table, exact=True).pvalue)


def test_mcnemar_with_no_discordant_image_is_one():
    # both arms get images 0-7 right and images 8, 9 wrong (in different ways): nothing to compare;
    # the chi-square version would divide 0 by 0
    y = np.arange(10)
    weighted, unweighted = y.copy(), y.copy()
    weighted[8:] = [0, 1]
    unweighted[8:] = [2, 3]
    result = mcnemar_exact(y, weighted, unweighted)
    assert result == {"only_arm_right": 0, "only_baseline_right": 0, "p_value": 1.0}


def test_confidence_label_is_exact():
    assert [confidence_label(a) for a in (0.05, 0.025, 0.005, 0.1, 0.001, 0.07)] == \
        ["95%", "97.5%", "99.5%", "90%", "99.9%", "93%"]


def constructed_run(seeds):
    """Per-seed metrics and predictions of two arms on 200 test images: the minority classes
    0-4 are often missed by the unweighted arm and mostly found by the weighted one."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 20)
    per_seed, predictions = {"weighted": {}, "unweighted": {}}, {"weighted": {}, "unweighted": {}}
    for seed in map(str, range(seeds)):
        draw = rng.random(200)
        unweighted = y.copy()
        unweighted[(y < 5) & (draw < 0.3)] = 9
        weighted = y.copy()
        weighted[(y < 5) & (draw < 0.05)] = 9
        for arm, pred in (("weighted", weighted), ("unweighted", unweighted)):
            predictions[arm][seed] = pred
            per_seed[arm][seed] = seed_metrics(y, np.eye(10)[pred] * 0.9 + 0.01, minority=[0, 1, 2, 3, 4])
    return per_seed, predictions, y


def test_compare_arms_on_constructed_predictions():
    per_seed, predictions, y = constructed_run(seeds=6)
    comparison = compare_arms(per_seed, predictions, y, alpha=0.05)
    assert comparison["seeds"] == ["0", "1", "2", "3", "4", "5"]
    assert list(comparison["difference"]) == ["accuracy", "balanced_accuracy", "macro_f1", "minority_recall",
                                              "minority_precision", "macro_pr_auc", "ece", "loss", "brier"]
    minority = comparison["difference"]["minority_recall"]
    assert minority["p_signflip"] == 2 / 64 and minority["verdict"] == "better"
    expected = [per_seed["weighted"][s]["minority_recall"] - per_seed["unweighted"][s]["minority_recall"]
                for s in comparison["seeds"]]
    assert minority["differences"] == pytest.approx(expected)
    # class 7 is never missed by either arm: zero spread, no t-test
    assert comparison["per_class_recall_difference"]["7"]["p_ttest"] is None
    assert comparison["per_class_recall_difference"]["7"]["verdict"] == "no significant difference"
    # ten per-class recalls with 6 seeds: Holm's smallest p is 10 * 2/64 > 0.05
    assert comparison["per_class_recall_difference"]["0"]["p_holm"] >= 10 * 2 / 64
    for seed, m in comparison["mcnemar"].items():
        right_w, right_u = predictions["weighted"][seed] == y, predictions["unweighted"][seed] == y
        assert m["only_weighted_right"] == np.sum(right_w & ~right_u) > 0
        assert m["only_unweighted_right"] == np.sum(right_u & ~right_w) == 0
    assert all(m["p_value"] < 0.01 for m in comparison["mcnemar"].values())
    headline = headline_comparison({"weighted_vs_unweighted": comparison}, minority=[0, 1, 2, 3, 4])
    assert headline["alpha"] == 0.05 and set(headline) == {"alpha", "weighted_vs_unweighted"}
    assert headline["weighted_vs_unweighted"]["minority_recall"] == {
        "mean": minority["mean"], "ci_low": minority["ci_low"], "ci_high": minority["ci_high"],
        "p": minority["p_verdict"], "verdict": minority["verdict"],
        # p = 2/64 lies within a factor 2 of alpha: one seed going the other way would undo the verdict;
        # 7 seeds let the sign-flip p reach 2/128 < alpha / 2
        "borderline": True, "seeds_to_settle": 7}
    assert minority["borderline"] == ["p within a factor 2 of α"]
    json.dumps(comparison, allow_nan=False)
    summary = summarise_seeds(per_seed["weighted"])
    assert summary["mean"]["per_class"]["9"]["recall"] == 1.0
    assert summary["std"]["accuracy"] == pytest.approx(np.std([per_seed["weighted"][s]["accuracy"] for s in "012345"],
                                                              ddof=1))


def test_compare_arms_with_one_seed_tests_nothing_but_mcnemar():
    per_seed, predictions, y = constructed_run(seeds=1)
    comparison = compare_arms(per_seed, predictions, y, alpha=0.05)
    assert {d["verdict"] for d in comparison["difference"].values()} == {NO_TEST}
    assert {d["verdict"] for d in comparison["per_class_recall_difference"].values()} == {NO_TEST}
    assert comparison["mcnemar"]["0"]["p_value"] < 0.01


def test_summary_prints_the_exact_interval_level_and_undefined_p_values():
    per_seed, predictions, y = constructed_run(seeds=3)
    comparison = compare_arms(per_seed, predictions, y, alpha=0.025)
    summaries = {arm: summarise_seeds(per_seed[arm]) for arm in ("unweighted", "weighted")}
    class_counts = {"minority_classes": ["0", "1", "2", "3", "4"], "minority_rule": "imbalance.minority_classes",
                    "train": {str(c): 10 for c in range(10)}, "test": {str(c): 10 for c in range(10)}}
    comparisons = {"weighted_vs_unweighted": comparison}
    params = shipped_params({"train": {"seeds": [0, 1, 2]}, "evaluate": {"alpha": 0.025}})
    text = summary_markdown(params, summaries, comparisons, headline_comparison(comparisons, ["0", "1", "2", "3", "4"]),
                            class_counts)
    assert "Student-t 97.5% interval" in text
    # class 7: zero spread, so the t-test cell is a dash, the sign-flip p 1
    assert "| recall of class 7 | +0.0000 | 0.0000 | [+0.0000, +0.0000] | – | 1.0000 |" in text


def test_seed_metrics_by_hand():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    metrics = seed_metrics(y, np.eye(10)[pred] * 0.9 + 0.01, minority=[0])
    assert metrics["accuracy"] == 0.75
    assert metrics["balanced_accuracy"] == 0.75  # sklearn averages over the classes present: (0.5 + 1) / 2
    assert metrics["minority_recall"] == 0.5
    assert metrics["per_class"]["1"]["precision"] == pytest.approx(2 / 3)
    assert metrics["loss"] == pytest.approx(-np.mean(np.log([0.91, 0.01, 0.91, 0.91])))


def _misses(y, count, wrong=9):
    """Predictions right except on the first `count` minority images (classes 0..4), called `wrong`."""
    pred = y.copy()
    pred[np.flatnonzero(y < 5)[:count]] = wrong
    return pred


def test_compare_arms_pairs_seeds_by_name_whatever_their_order():
    # Seeds 0, 1, 2: the unweighted arm misses 30, 10, 20 of 50 minority images, the adjusted arm
    # 20, 8, 10; paired differences in accuracy (of 100 images) 0.10, 0.02, 0.10: mean 0.22 / 3,
    # sd sqrt(((0.1 − m)^2 * 2 + (0.02 − m)^2) / 2). Pairing by position would pair seed 0 with 2.
    y = np.repeat(np.arange(10), 10)
    misses = {"unweighted": {"2": 20, "0": 30, "1": 10}, "logit_adjusted": {"0": 20, "1": 8, "2": 10}}
    predictions = {arm: {s: _misses(y, k) for s, k in by_seed.items()} for arm, by_seed in misses.items()}
    per_seed = {arm: {s: seed_metrics(y, np.eye(10)[p] * 0.9 + 0.01, minority=[0, 1, 2, 3, 4])
                      for s, p in by_seed.items()} for arm, by_seed in predictions.items()}
    result = compare_arms(per_seed, predictions, y, 0.05, arm="logit_adjusted", baseline="unweighted")
    m = 0.22 / 3
    assert result["arm"] == "logit_adjusted" and result["baseline"] == "unweighted"
    assert result["difference"]["accuracy"]["mean"] == pytest.approx(m)
    assert result["difference"]["accuracy"]["sd"] == pytest.approx(np.sqrt(((0.1 - m) ** 2 * 2 + (0.02 - m) ** 2) / 2))
    assert result["difference"]["minority_recall"]["mean"] == pytest.approx(2 * m)  # the misses are all minority
    assert {s: t["only_logit_adjusted_right"] for s, t in result["mcnemar"].items()} == {"0": 10, "1": 2, "2": 10}
    assert all(t["only_unweighted_right"] == 0 for t in result["mcnemar"].values())
    del per_seed["unweighted"]["2"]
    with pytest.raises(ValueError, match="different seeds"):
        compare_arms(per_seed, predictions, y, 0.05, arm="logit_adjusted", baseline="unweighted")


def _recall_difference(mean, p_holm):
    return {"n_seeds": 3, "mean": mean, "sd": 0.01, "ci_low": mean - 0.02, "ci_high": mean + 0.02,
            "p_ttest": p_holm / 3, "p_holm": p_holm, "verdict": "worse" if mean < -0.02 else "no significant difference"}


def test_headline_comparison_schema_and_the_majority_class_that_dropped_most():
    # Class 2 (a minority class) dropped most, but the majority class that dropped most is 7.
    # Classes are named by their keys (here the ids as strings, as MNIST's names are).
    recall = {str(c): _recall_difference(0.01 * c, 0.5) for c in range(10)}
    recall["2"] = _recall_difference(-0.30, 0.001)
    recall["7"] = _recall_difference(-0.10, 0.004)
    recall["8"] = _recall_difference(-0.05, 0.2)
    metric = {"n_seeds": 3, "mean": 0.05, "sd": 0.01, "ci_low": 0.03, "ci_high": 0.07, "p_ttest": 0.001,
              "p_signflip": 0.01, "p_verdict": 0.01, "verdict": "better"}
    one_seed = {"n_seeds": 1, "mean": -0.2, "differences": [-0.2], "verdict": NO_TEST}
    comparisons = {
        "weighted_vs_unweighted": {"alpha": 0.05, "difference": {"accuracy": metric, "minority_recall": metric},
                                   "per_class_recall_difference": recall},
        "logit_adjusted_vs_unweighted": {"alpha": 0.05, "difference": {"accuracy": one_seed},
                                         "per_class_recall_difference": {"0": one_seed, "5": one_seed}},
    }
    headline = headline_comparison(comparisons, minority=["0", "1", "2", "3", "4"])
    assert set(headline) == {"alpha", "weighted_vs_unweighted", "logit_adjusted_vs_unweighted"}
    block = headline["weighted_vs_unweighted"]
    assert block["accuracy"] == {"mean": 0.05, "ci_low": 0.03, "ci_high": 0.07, "p": 0.01, "verdict": "better",
                                 "borderline": False, "seeds_to_settle": None}
    seven = recall["7"]
    assert block["worst_majority_recall"] == {"class": "7", "mean": -0.10, "ci_low": seven["ci_low"],
                                              "ci_high": seven["ci_high"], "p": 0.004,  # the Holm p the verdict used
                                              "verdict": "worse", "borderline": False, "seeds_to_settle": None}
    # a majority class whose difference is not computable (mean None) is never the worst
    recall["9"] = {"n_seeds": 3, "mean": None, "differences": [None] * 3, "verdict": NOT_COMPUTABLE}
    assert headline_comparison(comparisons, minority=["0", "1", "2", "3", "4"])["weighted_vs_unweighted"][
        "worst_majority_recall"]["class"] == "7"
    single = headline["logit_adjusted_vs_unweighted"]
    assert single["accuracy"] == {"mean": -0.2, "ci_low": None, "ci_high": None, "p": None, "verdict": NO_TEST,
                                  "borderline": False, "seeds_to_settle": None}
    assert single["worst_majority_recall"]["class"] == "5"


def test_the_smallest_sign_flip_p_is_2_over_2_to_the_n():
    # what orchestration.plan.fewest_seeds_for_a_verdict counts on (tested in test_first_hour)
    assert sign_flip_p([0.1] * 6) == 2 / 2 ** 6 < 0.05 < sign_flip_p([0.1] * 5)


# Minority-recall differences (steps of 0.002) of one comparison, ten seeds, on two machines:
# "−0.009 [−0.018, −0.001] → worse" on one, "−0.008 [−0.016, +0.001] → no significant difference"
# on the other. Neither verdict is firm, and both must say so.
WORSE_ON_ONE_MACHINE = [-0.024, -0.024, -0.022, -0.014, -0.012, -0.006, 0.0, 0.0, 0.002, 0.008]
NO_DIFFERENCE_ON_ANOTHER = [-0.024, -0.022, -0.022, -0.016, -0.006, 0.0, 0.002, 0.002, 0.004, 0.004]


@pytest.mark.parametrize("differences, shown, verdict_text, reasons, seeds", [
    (WORSE_ON_ONE_MACHINE, ("-0.009", "-0.018", "-0.001"), "worse",
     ["p within a factor 2 of α", "the interval ends near 0"], 12),
    (NO_DIFFERENCE_ON_ANOTHER, ("-0.008", "-0.016", "+0.001"), "no significant difference",
     ["the interval ends near 0"], 16),
])
def test_a_verdict_that_flips_between_machines_is_borderline(differences, shown, verdict_text, reasons, seeds):
    d = compare_metrics({"minority_recall": differences}, {"minority_recall": [0.0] * 10}, 0.05)["minority_recall"]
    assert tuple(f"{d[k]:+.3f}" for k in ("mean", "ci_low", "ci_high")) == shown
    assert d["verdict"] == verdict_text and d["borderline"] == reasons
    assert d["seeds_to_settle"] == seeds  # more than the 10 run, so the summary can say what settles it


def test_a_firm_verdict_has_no_reasons_and_nothing_to_settle():
    d = compare_metrics({"m": [0.05, 0.06, 0.04, 0.05, 0.07, 0.05, 0.06, 0.04, 0.05, 0.06]}, {"m": [0.0] * 10},
                        0.05)["m"]
    assert d["verdict"] == "better" and d["borderline"] == [] and d["seeds_to_settle"] is None


def test_each_borderline_reason_on_its_own_and_at_its_edges():
    firm = {"ci_low": 0.02, "ci_high": 0.06}
    assert borderline_reasons(firm, 0.0249, 0.05) == []
    assert borderline_reasons(firm, 0.025, 0.05) == ["p within a factor 2 of α"]  # alpha / 2 counts
    assert borderline_reasons(firm, 0.0999, 0.05) == ["the interval excludes 0 but the sign-flip test does not confirm it",
                                                      "p within a factor 2 of α"]
    assert borderline_reasons(firm, 0.05, 0.05) == ["the interval excludes 0 but the sign-flip test does not confirm it",
                                                    "p within a factor 2 of α"]  # p = alpha does not reach it
    # near end 0.125 of width 1.25: 10% exactly is not near; just below is
    assert borderline_reasons({"ci_low": 0.125, "ci_high": 1.375}, 0.001, 0.05) == []
    assert borderline_reasons({"ci_low": 0.124, "ci_high": 1.375}, 0.001, 0.05) == ["the interval ends near 0"]
    assert borderline_reasons({"ci_low": 0.0039, "ci_high": 0.044}, 0.001, 0.05) == ["the interval ends near 0"]
    assert borderline_reasons({"ci_low": -0.044, "ci_high": -0.0039}, 0.001, 0.05) == ["the interval ends near 0"]
    # straddling 0 with the near end just across it is borderline too; well across it is not
    assert borderline_reasons({"ci_low": -0.003, "ci_high": 0.04}, 0.5, 0.05) == ["the interval ends near 0"]
    assert borderline_reasons({"ci_low": -0.02, "ci_high": 0.02}, 0.5, 0.05) == []
    assert borderline_reasons({"ci_low": -0.02, "ci_high": 0.02}, 0.1, 0.05) == []  # 2 alpha is not near
    # an interval that touches 0 does not exclude it: no disagreement, only the near end
    assert borderline_reasons({"ci_low": 0.0, "ci_high": 0.04}, 0.5, 0.05) == ["the interval ends near 0"]
    assert borderline_reasons({"ci_low": -0.04, "ci_high": 0.0}, 0.5, 0.05) == ["the interval ends near 0"]


def test_seeds_to_settle_by_hand():
    # zero spread: only the sign-flip floor counts, 2m / 2^n < alpha / 2: 2^n > 80 (n = 7) for one
    # metric, 2^n > 800 (n = 10) in a family of ten
    assert seeds_to_settle(0.01, 0.0, 5, 0.05) == 7
    assert seeds_to_settle(-0.01, 0.0, 5, 0.05, family_size=10) == 10
    assert seeds_to_settle(0.01, 0.0, 7, 0.05) == 8  # always more seeds than were run
    # mean = sd: t = sqrt(n); the margin needs 1.2 t(0.975, n − 1) / sqrt(n) <= 1: n = 8 gives
    # 1.2 * 2.365 / 2.828 = 1.003 (no), n = 9 gives 1.2 * 2.306 / 3 = 0.922 (yes, and p = 0.017 < 0.025)
    assert seeds_to_settle(0.01, 0.01, 3, 0.05) == 9
    assert seeds_to_settle(-0.01, 0.01, 3, 0.05) == 9
    # mean / sd = 2.95 / sqrt 7: at 7 seeds the margin holds (t = 2.95 > 1.2 * 2.447 = 2.936) but the
    # t-test p does not reach alpha / 2 (t(0.9875, 6) = 2.969); at 8 seeds both hold
    assert seeds_to_settle(2.95 / np.sqrt(7), 1.0, 3, 0.05) == 8
    # in a family of ten the interval is at level 1 − 0.05 / 10: 1.2 t(0.9975, n − 1) / sqrt(n) is
    # 1.030 at 15 seeds and 0.986 at 16 (the p condition, 10 * p < 0.025, holds from 14 on)
    assert seeds_to_settle(0.01, 0.01, 3, 0.05, family_size=10) == 16
    assert seeds_to_settle(0.01, 0.0, 2, 0.25) == 5  # 2 / 2^4 = 0.125 is not below 0.25 / 2
    assert seeds_to_settle(0.0, 0.01, 3, 0.05) is None  # more seeds cannot make a zero mean differ
    assert seeds_to_settle(0.0, 0.0, 3, 0.05) is None
    # the search ends at 1000 seeds: a need of exactly 1000 is named, one of 1001 is not
    assert seeds_to_settle(0.0744842984260258, 1.0, 3, 0.05) == 1000
    assert seeds_to_settle(0.07444697517437446, 1.0, 3, 0.05) is None


def _settled_by_scipy(n, mean, family_size, alpha):
    """The settling rule evaluated on n differences that have exactly this mean and sd 1, through
    scipy's own t-test and its confidence interval."""
    z = np.arange(n) - (n - 1) / 2
    test = stats.ttest_1samp(mean + z / z.std(ddof=1), 0.0)
    low, high = test.confidence_interval(1 - alpha / family_size)
    return (2 * family_size / 2 ** n < alpha / 2 and test.pvalue * family_size < alpha / 2
            and min(abs(low), abs(high)) > 0.1 * (high - low) and (low > 0 or high < 0))


# at alpha 0.05 the interval's margin decides; at 0.5 (few seeds) the t-test's p often does
@pytest.mark.parametrize("alpha", [0.05, 0.5])
@pytest.mark.parametrize("family_size", [1, 2, 4, 10])
@pytest.mark.parametrize("mean", [0.3, 0.8, 1.5, -2.5])
def test_seeds_to_settle_agrees_with_scipys_t_test_on_data_of_that_mean_and_sd(mean, family_size, alpha):
    expected = next(n for n in range(3, 1000) if _settled_by_scipy(n, mean, family_size, alpha))
    assert seeds_to_settle(mean, 1.0, 2, alpha, family_size) == expected


def test_a_per_class_estimate_counts_the_whole_family():
    names = ["recall.0", "recall.1", "recall.2", "recall.3"]
    results = compare_metrics(dict(zip(names, FAMILY_WEIGHTED)), dict(zip(names, FAMILY_UNWEIGHTED)), 0.05,
                              family=names)
    borderline = [r for r in results.values() if r["borderline"]]
    assert borderline  # Holm p within a factor 2 of alpha for some of the four
    assert [r["seeds_to_settle"] for r in borderline] == [seeds_to_settle(r["mean"], r["sd"], 10, 0.05, family_size=4)
                                                          for r in borderline] == [20, 11, 11, 14]
    assert [seeds_to_settle(r["mean"], r["sd"], 10, 0.05) for r in borderline] == [12, 11, 11, 11]  # one test alone


def test_tests_that_disagree_are_borderline_not_a_contradiction():
    # five seeds, each gaining exactly 0.01: the (zero-width) interval excludes 0, but the
    # sign-flip p cannot go below 2/32; the verdict says why and what would settle it
    d = compare_metrics({"m": [0.01] * 5}, {"m": [0.0] * 5}, 0.05)["m"]
    assert excludes_zero(d) and d["verdict"] == "no significant difference"
    assert d["borderline"] == ["the interval excludes 0 but the sign-flip test does not confirm it",
                               "p within a factor 2 of α"]  # 0.0625
    assert d["seeds_to_settle"] == 7


def test_per_class_intervals_are_simultaneous_bonferroni_intervals():
    names = ["recall.0", "recall.1", "recall.2", "recall.3"]
    results = compare_metrics(dict(zip(names, FAMILY_WEIGHTED)), dict(zip(names, FAMILY_UNWEIGHTED)), 0.05,
                              family=names)
    for name, arm, baseline in zip(names, FAMILY_WEIGHTED, FAMILY_UNWEIGHTED):
        diff = np.subtract(arm, baseline)
        half = stats.t.ppf(1 - 0.05 / 4 / 2, 9) * diff.std(ddof=1) / np.sqrt(10)  # 98.75%: alpha / 4 classes
        r = results[name]
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
        assert r["ci_level"] == "98.75% simultaneous (Bonferroni over 4)"
    plain = compare_metrics(dict(zip(names, FAMILY_WEIGHTED)), dict(zip(names, FAMILY_UNWEIGHTED)), 0.05)
    assert plain["recall.1"]["ci_level"] == "95%"
    assert plain["recall.1"]["ci_high"] - plain["recall.1"]["ci_low"] < results["recall.1"]["ci_high"] - \
        results["recall.1"]["ci_low"]


def test_interval_and_verdict_never_contradict():
    # random families of ten classes over 5 to 10 seeds: a "better"/"worse" row's interval
    # excludes 0, and a row whose interval excludes 0 without a verdict is marked as the tests
    # disagreeing; the Holm p is then below alpha for the t-test (the interval) but not for both
    rng = np.random.default_rng(3)
    disagreements = 0
    for trial in range(12):
        seeds = int(rng.integers(5, 11))
        names = [f"recall.{c}" for c in range(10)]
        shift = rng.normal(0, 0.02, 10)
        arm = {n: list(rng.integers(0, 100, seeds) / 100) for n in names}
        baseline = {n: list(np.round(np.add(arm[n], -shift[i] + rng.normal(0, 0.015, seeds)), 2))
                    for i, n in enumerate(names)}
        for r in compare_metrics(arm, baseline, 0.05, family=names).values():
            if r["verdict"] in ("better", "worse"):
                assert excludes_zero(r) and r["p_holm"] < 0.05
            elif excludes_zero(r):
                disagreements += 1
                assert r["borderline"][0] == "the interval excludes 0 but the sign-flip test does not confirm it"
                assert r["p_ttest"] is None or r["p_ttest"] < 0.05 / 10  # the interval's own test rejects
    assert disagreements > 0  # the case occurred and was checked


def test_a_fall_is_better_for_a_metric_where_lower_is_better():
    fall, rise = [-0.02, -0.03, -0.01, -0.02, -0.025, -0.015], [0.02, 0.03, 0.01, 0.02, 0.025, 0.015]
    results = compare_metrics({"ece": fall, "loss": rise, "accuracy": fall}, {m: [0.0] * 6 for m in ("ece", "loss", "accuracy")},
                              0.05, lower_is_better=("ece", "loss"))
    assert [results[m]["verdict"] for m in ("ece", "loss", "accuracy")] == ["better", "worse", "worse"]


def test_compare_arms_tests_per_class_precision_and_f1_as_families_of_their_own():
    per_seed, predictions, y = constructed_run(seeds=10)
    comparison = compare_arms(per_seed, predictions, y, alpha=0.05)
    for kind in ("precision", "f1"):
        family = comparison[f"per_class_{kind}_difference"]
        assert list(family) == [str(c) for c in range(10)]
        scores = {arm: {s: precision_recall_fscore_support(y, predictions[arm][s], labels=range(10), zero_division=0)
                        for s in comparison["seeds"]} for arm in ("weighted", "unweighted")}
        column = 0 if kind == "precision" else 2
        expected = [scores["weighted"][s][column][9] - scores["unweighted"][s][column][9] for s in comparison["seeds"]]
        assert family["9"]["differences"] == pytest.approx(expected)
        # Holm over this family's classes alone, not over recall, precision and F1 together
        tested = [d for d in family.values() if "p_verdict" in d]
        holm = multipletests([d["p_verdict"] for d in tested], method="holm")[1]
        assert [d["p_holm"] for d in tested] == pytest.approx(list(holm))
    # fewer minority images sent to class 9: its precision rises on every seed, firmly
    assert comparison["per_class_precision_difference"]["9"]["verdict"] == "better"
    assert comparison["per_class_precision_difference"]["9"]["p_holm"] < 0.05
