"""The paired statistics against small cases worked by hand."""
import numpy as np
import pytest

from classweights.evaluation import seed_metrics, summarise_seeds
from classweights.statistics import NO_TEST, compare_arms, mcnemar_exact, paired_difference, verdict


def test_paired_difference_matches_a_hand_worked_case():
    # differences 0.02, 0.02, 0.01: mean 1/60, sd = sqrt(((1/300)^2 * 2 + (2/300)^2) / 2) = 0.0057735
    # t = (1/60) / (0.0057735 / sqrt 3) = 5.0; two-sided p with 2 df = 0.03775; t(0.975, 2) = 4.3027
    d = paired_difference([0.92, 0.94, 0.93], [0.90, 0.92, 0.92], alpha=0.05)
    assert d["mean"] == pytest.approx(1 / 60)
    assert d["sd"] == pytest.approx(0.0057735, abs=1e-6)
    assert d["p_ttest"] == pytest.approx(0.03775, abs=1e-4)
    half = 4.302653 * 0.0057735 / np.sqrt(3)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((1 / 60 - half, 1 / 60 + half), abs=1e-6)
    assert "p_wilcoxon" not in d
    assert verdict(d, 0.05) == "better"
    assert verdict(d, 0.01) == "no significant difference"


def test_wilcoxon_from_six_seeds():
    # six positive differences with distinct sizes: exact two-sided p = 2 / 2^6 = 0.03125
    d = paired_difference([1.1, 1.2, 1.3, 1.4, 1.5, 1.6], [1.0] * 6, alpha=0.05)
    assert d["p_wilcoxon"] == pytest.approx(0.03125)


def test_identical_arms_give_p_one_and_no_difference():
    d = paired_difference([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], alpha=0.05)
    assert d["mean"] == 0 and d["p_ttest"] == 1.0 and d["p_wilcoxon"] == 1.0
    assert verdict(d, 0.05) == "no significant difference"


def test_never_better_when_the_interval_contains_zero():
    d = paired_difference([0.95, 0.80, 0.99], [0.90, 0.90, 0.90], alpha=0.05)
    assert d["ci_low"] < 0 < d["ci_high"]
    assert verdict(d, 0.05) == "no significant difference"


def test_worse_is_reported():
    d = paired_difference([0.80, 0.81, 0.79, 0.80], [0.90, 0.92, 0.91, 0.90], alpha=0.05)
    assert verdict(d, 0.05) == "worse"


def test_one_seed_gives_no_test_and_no_p_value():
    d = paired_difference([0.9], [0.8], alpha=0.05)
    assert "p_ttest" not in d and "ci_low" not in d
    assert verdict(d, 0.05) == NO_TEST


def test_mcnemar_counts_the_images_only_one_arm_gets_right():
    y = np.zeros(20, int)
    weighted = np.zeros(20, int)
    unweighted = np.zeros(20, int)
    weighted[:2] = 1     # images 0, 1: only unweighted right
    unweighted[2:10] = 1  # images 2..9: only weighted right
    both_wrong = 19
    weighted[both_wrong] = unweighted[both_wrong] = 1
    result = mcnemar_exact(y, weighted, unweighted)
    assert result["only_weighted_right"] == 8 and result["only_unweighted_right"] == 2
    # exact: 2 * P(X <= 2), X ~ Binomial(10, 1/2) = 2 * 56 / 1024
    assert result["p_value"] == pytest.approx(112 / 1024)


def test_mcnemar_of_identical_predictions_is_one():
    y = np.arange(10)
    assert mcnemar_exact(y, y.copy(), y.copy())["p_value"] == 1.0


def test_compare_arms_on_constructed_predictions():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 20)
    per_seed, predictions = {"weighted": {}, "unweighted": {}}, {"weighted": {}, "unweighted": {}}
    for seed in ("0", "1", "2"):
        draw = rng.random(200)
        unweighted = y.copy()
        unweighted[(y < 5) & (draw < 0.3)] = 9  # the minority classes are often missed...
        weighted = y.copy()
        weighted[(y < 5) & (draw < 0.05)] = 9  # ...and weighting fixes most of those images
        for arm, pred in (("weighted", weighted), ("unweighted", unweighted)):
            predictions[arm][seed] = pred
            per_seed[arm][seed] = seed_metrics(y, np.eye(10)[pred] * 0.9 + 0.01, minority=[0, 1, 2, 3, 4])
    comparison = compare_arms(per_seed, predictions, y, alpha=0.05)
    assert comparison["difference"]["minority_recall"]["verdict"] == "better"
    assert comparison["per_class_recall_difference"]["7"]["verdict"] == "no significant difference"
    assert all(m["only_unweighted_right"] == 0 for m in comparison["mcnemar"].values())
    assert all(m["p_value"] < 0.01 for m in comparison["mcnemar"].values())
    summary = summarise_seeds(per_seed["weighted"])
    assert summary["mean"]["per_class"]["9"]["recall"] == 1.0
    assert summary["std"]["accuracy"] == pytest.approx(np.std([per_seed["weighted"][s]["accuracy"] for s in "012"], ddof=1))


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
    from classweights.statistics import headline_comparison  # (imported here: this file's header is shared)

    # Class 2 (a minority class) dropped most, but the majority class that dropped most is 7.
    recall = {str(c): _recall_difference(0.01 * c, 0.5) for c in range(10)}
    recall["2"] = _recall_difference(-0.30, 0.001)
    recall["7"] = _recall_difference(-0.10, 0.004)
    recall["8"] = _recall_difference(-0.05, 0.2)
    metric = {"n_seeds": 3, "mean": 0.05, "sd": 0.01, "ci_low": 0.03, "ci_high": 0.07, "p_ttest": 0.01,
              "verdict": "better"}
    one_seed = {"n_seeds": 1, "mean": -0.2, "differences": [-0.2], "verdict": NO_TEST}
    comparisons = {
        "weighted_vs_unweighted": {"alpha": 0.05, "difference": {"accuracy": metric, "minority_recall": metric},
                                   "per_class_recall_difference": recall},
        "logit_adjusted_vs_unweighted": {"alpha": 0.05, "difference": {"accuracy": one_seed},
                                         "per_class_recall_difference": {"0": one_seed, "5": one_seed}},
    }
    headline = headline_comparison(comparisons, minority=[0, 1, 2, 3, 4])
    assert set(headline) == {"alpha", "weighted_vs_unweighted", "logit_adjusted_vs_unweighted"}
    block = headline["weighted_vs_unweighted"]
    assert block["accuracy"] == {"mean": 0.05, "ci_low": 0.03, "ci_high": 0.07, "p": 0.01, "verdict": "better"}
    seven = recall["7"]
    assert block["worst_majority_recall"] == {"class": 7, "mean": -0.10, "ci_low": seven["ci_low"],
                                              "ci_high": seven["ci_high"], "p": 0.004,  # the Holm p the verdict used
                                              "verdict": "worse"}
    single = headline["logit_adjusted_vs_unweighted"]
    assert single["accuracy"] == {"mean": -0.2, "ci_low": None, "ci_high": None, "p": None, "verdict": NO_TEST}
    assert single["worst_majority_recall"]["class"] == 5
