"""The post-hoc logit-adjusted arm with τ tuned on the validation split: the choice on probabilities
whose answers are worked by hand, the param's bad values and the labels (a real `dvc repro` with a
tuned τ: tests/test_pipeline.py)."""
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from classweights.errors import UserError
from classweights.evaluation import (LOGIT_ADJUSTED, arm_probabilities, describe_tau, logit_adjusted_proba, tune_tau,
                                     tuned_taus)
from classweights.params import parse_params
from classweights.report import arm_labels
from tools.sandbox import committed_params, merged, shipped_params

# Two classes, prior (0.8, 0.2): the adjustment raises class 1's log score by τ · ln 4 against class 0's,
# so an image with p1 / p0 = 4^-t is called class 1 exactly when τ > t: t is the τ at which it flips.
PRIOR = np.array([0.8, 0.2])
COUNTS = {"big": 80, "small": 20}
GRID = [0, 1, 2, 3]


def flipping_at(thresholds):
    """Probabilities (p0, p1) with p1 / p0 = 4^-t for each t: called class 1 once τ > t."""
    ratio = 4.0 ** -np.asarray(thresholds, dtype=float)
    return np.column_stack([1 / (1 + ratio), ratio / (1 + ratio)])


# Validation: the rare class's images flip at 0.5, the common class's at 1.5 → all right only at τ = 1
# (balanced accuracy 0.5, 1, 0.5, 0.5 over the grid). Test: they flip at 1.5 and 2.5 → all right only
# at τ = 2. A choice made on the test split picks 2.
Y_VAL, VAL = np.array([1, 1, 0, 0, 0]), flipping_at([0.5, 0.5, 1.5, 1.5, 1.5])
Y_TEST, TEST = np.array([1, 1, 0, 0, 0]), flipping_at([1.5, 1.5, 2.5, 2.5, 2.5])


def test_worked_flips_give_the_balanced_accuracies_worked_by_hand():
    def balanced(y, proba, tau):
        return balanced_accuracy_score(y, logit_adjusted_proba(proba, PRIOR, tau).argmax(axis=1))

    assert [balanced(Y_VAL, VAL, tau) for tau in GRID] == [0.5, 1.0, 0.5, 0.5]
    assert [balanced(Y_TEST, TEST, tau) for tau in GRID] == [0.5, 0.5, 1.0, 0.5]


def test_tau_is_chosen_on_the_validation_split_not_the_test_split():
    assert tune_tau(Y_VAL, VAL, PRIOR, GRID) == 1
    assert tune_tau(Y_TEST, TEST, PRIOR, GRID) == 2  # what a choice on the wrong split gives
    # per seed, each from its own validation probabilities; the test probabilities take the seed's τ
    taus = tuned_taus(Y_VAL, {"0": VAL, "1": flipping_at([1.5, 1.5, 2.5, 2.5, 2.5])}, COUNTS, GRID)
    assert taus == {"0": 1, "1": 2}
    arms = arm_probabilities({"unweighted": {"0": TEST, "1": TEST}, "weighted": {}}, COUNTS, taus)
    np.testing.assert_allclose(arms[LOGIT_ADJUSTED]["0"], logit_adjusted_proba(TEST, PRIOR, 1))
    np.testing.assert_allclose(arms[LOGIT_ADJUSTED]["1"], logit_adjusted_proba(TEST, PRIOR, 2))


@pytest.mark.parametrize("grid", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 3, 1]])
def test_a_tie_goes_to_the_smaller_tau_in_any_grid_order(grid):
    # rare images flip at 0.5, common ones at 2.5: τ = 1 and τ = 2 both get every image right
    y, proba = np.array([1, 0]), flipping_at([0.5, 2.5])
    assert tune_tau(y, proba, PRIOR, grid) == 1


def test_a_grid_of_one_tau_takes_it_and_a_tuned_zero_keeps_the_arm():
    assert tune_tau(Y_VAL, VAL, PRIOR, [2.5]) == 2.5
    arms = arm_probabilities({"unweighted": {"0": TEST}, "weighted": {}}, COUNTS, {"0": 0.0})
    np.testing.assert_allclose(arms[LOGIT_ADJUSTED]["0"], TEST)  # tuned to 0: the arm is there, unadjusted


def test_the_arm_s_label_says_tau_was_tuned_on_validation():
    tuned = shipped_params({"evaluate": {"logit_adjustment_tau": "tuned"}})
    assert arm_labels(tuned)[LOGIT_ADJUSTED] == "logit-adjusted (τ tuned on validation)"
    assert arm_labels(shipped_params())[LOGIT_ADJUSTED] == "logit-adjusted (τ = 1)"  # today's words
    assert describe_tau(0.25) == "τ = 0.25"


@pytest.mark.parametrize("evaluate, words", [
    ({"logit_adjustment_tau": "tune"}, "evaluate.logit_adjustment_tau = 'tune': must be a finite number >= 0"),
    ({"logit_adjustment_tau": True}, "evaluate.logit_adjustment_tau = True: must be a finite number >= 0"),
    ({"logit_adjustment_tau_grid": []}, "evaluate.logit_adjustment_tau_grid = []: must list at least one τ"),
    ({"logit_adjustment_tau_grid": [0, 1, -1]},
     "evaluate.logit_adjustment_tau_grid = [0, 1, -1]: τ -1 is not allowed; every τ of the grid must be a finite number >= 0"),
    ({"logit_adjustment_tau_grid": [0, float("nan")]}, "τ nan is not allowed"),
])
def test_a_bad_tau_or_grid_is_one_line_naming_the_key_and_what_is_allowed(evaluate, words):
    # (negative and non-finite τ: tests/test_arms.py)
    with pytest.raises(UserError) as caught:
        parse_params(merged(committed_params(), {"evaluate": evaluate}))
    message = str(caught.value)
    assert words in message and "\n" not in message
    if "logit_adjustment_tau_grid" not in evaluate:
        assert "or 'tuned'" in message
