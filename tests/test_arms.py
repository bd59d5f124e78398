"""The logit-adjusted arm on probabilities whose answers are worked by hand, and its param."""
import subprocess
import sys

import numpy as np
import pytest
import yaml

from classweights.errors import UserError
from classweights.evaluation import (LOGIT_ADJUSTED, arm_probabilities, comparison_pairs, headline_metrics,
                                     logit_adjusted_proba, seed_metrics, summarise_seeds, training_prior)
from classweights.params import parse_params
from tools.sandbox import ROOT, committed_params, merged

SKEWED_PRIOR = np.array([0.02, 0.02, 0.02, 0.02, 0.02, 0.18, 0.18, 0.18, 0.18, 0.18])


def random_proba(rows, seed=0):
    return np.random.default_rng(seed).dirichlet(np.full(10, 0.5), size=rows)


def test_tau_zero_gives_the_unweighted_predictions_and_probabilities():
    proba = random_proba(500)
    adjusted = logit_adjusted_proba(proba, SKEWED_PRIOR, tau=0)
    assert np.array_equal(adjusted.argmax(axis=1), proba.argmax(axis=1))
    assert adjusted == pytest.approx(proba, abs=1e-9)


@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_a_uniform_prior_changes_nothing(tau):
    proba = random_proba(500, seed=1)
    adjusted = logit_adjusted_proba(proba, np.full(10, 0.1), tau)
    assert np.array_equal(adjusted.argmax(axis=1), proba.argmax(axis=1))
    assert adjusted == pytest.approx(proba, abs=1e-9)  # the same shift for every class cancels in the softmax


# Class 0 is rare (pi 0.02), class 9 common (pi 0.2); the model prefers 9: 0.62 vs 0.30.
# Adjusted scores log(p / pi^tau): class 0 wins once tau > log(0.30 / 0.62) / log(0.02 / 0.2) = 0.3153.
FLIP_PRIOR = np.array([0.02] + [0.0975] * 8 + [0.2])
FLIP_PROBA = np.array([[0.30] + [0.01] * 8 + [0.62]])


@pytest.mark.parametrize("tau, predicted", [(0.30, 9), (0.33, 0), (1.0, 0)])
def test_the_adjustment_flips_a_prediction_toward_the_rare_class_past_the_worked_threshold(tau, predicted):
    assert logit_adjusted_proba(FLIP_PROBA, FLIP_PRIOR, tau).argmax() == predicted


def test_the_adjusted_probabilities_are_p_over_prior_renormalised():
    # tau = 1: softmax(log p − log pi) = (p / pi) / sum(p / pi): class 0 has 15, class 9 has 3.1,
    # each other class 0.01 / 0.0975.
    adjusted = logit_adjusted_proba(FLIP_PROBA, FLIP_PRIOR, 1.0)[0]
    total = 15 + 3.1 + 8 * 0.01 / 0.0975
    assert adjusted[0] == pytest.approx(15 / total) and adjusted[9] == pytest.approx(3.1 / total)
    assert adjusted.sum() == pytest.approx(1.0)


def test_a_zero_prior_or_zero_probability_gives_no_nan_or_inf():
    prior = np.array([0.0, 0.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.1])
    proba = np.vstack([np.eye(10)[7], np.full(10, 0.1), random_proba(3)]).astype(np.float32)  # exact zeros too
    for tau in (1.0, 3.0):
        adjusted = logit_adjusted_proba(proba, prior, tau)
        assert np.isfinite(adjusted).all()
        assert adjusted.sum(axis=1) == pytest.approx(np.ones(len(proba)))
        assert adjusted[1].argmax() in (0, 1)  # a uniform row goes to the class the prior never saw
    metrics = seed_metrics(np.array([7, 0, 1, 0, 1]), logit_adjusted_proba(proba, prior, 1.0), minority=[0, 1])
    assert np.isfinite(metrics["loss"])


def test_probabilities_and_prior_are_floored_before_the_log_in_double_precision():
    prior = np.array([0.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.1, 0.1])
    proba = np.eye(10, dtype=np.float32)[[7]]  # the model gives class 0 probability exactly 0
    adjusted = logit_adjusted_proba(proba, prior, 3.0)
    # by hand: class 0 scores log(1e-12) - 3 log(1e-12) = +55.3, class 7 scores 0 - 3 log(0.2) = +4.8
    logits = np.log(np.maximum(proba.astype(np.float64), 1e-12)) - 3.0 * np.log(np.maximum(prior, 1e-12))
    assert adjusted.dtype == np.float64 and adjusted.argmax() == 0
    assert adjusted == pytest.approx(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum(), rel=1e-12, abs=0)


def test_training_prior_is_each_class_share_of_the_training_images():
    counts = {str(c): n for c, n in enumerate([10, 10, 10, 10, 10, 50, 50, 50, 50, 60])}
    assert training_prior(counts) == pytest.approx(np.array([10] * 5 + [50] * 4 + [60]) / 310)


def test_the_adjusted_arm_reuses_each_seed_s_own_unweighted_probabilities():
    trained = {"unweighted": {"3": random_proba(50, 3), "7": random_proba(50, 7)},
               "weighted": {"3": random_proba(50, 4), "7": random_proba(50, 8)}}
    counts = {str(c): n for c, n in enumerate([2, 2, 2, 2, 2, 18, 18, 18, 18, 18])}
    arms = arm_probabilities(trained, counts, tau=1.0)
    assert list(arms) == ["unweighted", "weighted", LOGIT_ADJUSTED]
    for seed in ("3", "7"):
        expected = logit_adjusted_proba(trained["unweighted"][seed], SKEWED_PRIOR, 1.0)
        assert arms[LOGIT_ADJUSTED][seed] == pytest.approx(expected)
    assert comparison_pairs(arms) == [("weighted", "unweighted"), (LOGIT_ADJUSTED, "unweighted"),
                                      ("weighted", LOGIT_ADJUSTED)]
    off = arm_probabilities(trained, counts, tau=0)
    assert list(off) == ["unweighted", "weighted"] and comparison_pairs(off) == [("weighted", "unweighted")]


def test_an_arm_s_headline_file_holds_only_mean_and_sd_of_the_headline_metrics():
    y = np.repeat(np.arange(10), 3)
    per_seed = {s: seed_metrics(y, random_proba(30, int(s)), minority=[0, 1]) for s in ("0", "1")}
    headline = headline_metrics(summarise_seeds(per_seed))
    names = {"accuracy", "loss", "balanced_accuracy", "macro_f1", "minority_recall", "minority_precision", "macro_pr_auc",
             "ece", "brier"}
    assert set(headline) == {"mean", "sd"} and set(headline["mean"]) == set(headline["sd"]) == names
    assert headline["sd"]["loss"] == pytest.approx(np.std([per_seed[s]["loss"] for s in "01"], ddof=1))


@pytest.mark.parametrize("tau", [-0.5, "one", float("nan"), float("inf")])
def test_a_bad_tau_is_one_line_naming_key_value_and_what_is_allowed(tau):
    with pytest.raises(UserError) as caught:
        parse_params(merged(committed_params(), {"evaluate": {"logit_adjustment_tau": tau}}))
    message = str(caught.value)
    assert f"evaluate.logit_adjustment_tau = {tau!r}: must be a finite number >= 0" in message
    assert "or 'tuned'" in message and "\n" not in message


def test_the_params_check_rejects_a_negative_tau_before_anything_runs(subprocesses, tmp_path):
    params = merged(committed_params(), {"evaluate": {"logit_adjustment_tau": -1}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, "-m", "classweights.params"], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("error: params.yaml: evaluate.logit_adjustment_tau = -1: must be a finite number >= 0 "
                             "(0 turns the arm off) or 'tuned' (chosen per seed on the validation split from "
                             "evaluate.logit_adjustment_tau_grid)\n")
