import typing

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from classweights.params import WeightsParams
from classweights.weights import STRATEGIES, class_weights

LABELS = np.repeat(np.arange(10), [400] * 5 + [40] * 3 + [10, 4])


def sample_mean(weights, labels):
    return np.mean([weights[int(c)] for c in labels])


def test_balanced_equals_scikit_learn_and_the_formula():
    weights = class_weights(LABELS, "balanced", beta=0.999)
    expected = compute_class_weight("balanced", classes=np.arange(10), y=LABELS)
    assert np.allclose([weights[c] for c in range(10)], expected)
    counts = np.bincount(LABELS)
    assert np.allclose([weights[c] for c in range(10)], len(LABELS) / (10 * counts))


def test_balanced_gives_scikit_learn_s_bits_before_the_normalisation():
    # the stage computes N / (K * n_c) itself (importing scikit-learn cost it ~2 s): the same
    # float64 arithmetic, so the committed class_weights.json keeps its bytes
    rng = np.random.default_rng(0)
    for labels in [LABELS, rng.integers(0, 7, 1001), rng.integers(0, 39, 60_000), np.repeat([3, 8], [5, 123_457])]:
        classes, counts = np.unique(labels, return_counts=True)
        ours = STRATEGIES["balanced"](labels, classes, counts, 0.999)
        assert np.array_equal(ours, compute_class_weight("balanced", classes=classes, y=labels))


@pytest.mark.parametrize("strategy, formula", [
    ("sqrt_inverse", lambda n: 1 / np.sqrt(n)),
    ("effective_number", lambda n: (1 - 0.99) / (1 - 0.99 ** n)),
])
def test_other_strategies_follow_their_formula_up_to_the_normalisation(strategy, formula):
    weights = class_weights(LABELS, strategy, beta=0.99)
    raw = formula(np.bincount(LABELS).astype(float))
    ratios = np.array([weights[c] for c in range(10)]) / raw
    assert np.allclose(ratios, ratios[0])


@pytest.mark.parametrize("strategy", ["balanced", "sqrt_inverse", "effective_number"])
@pytest.mark.parametrize("per_class", [36, 90, 5400])  # counts where plain normalising misses 1.0 by an ulp
def test_equal_counts_give_every_class_a_weight_of_exactly_one(strategy, per_class):
    weights = class_weights(np.repeat(np.arange(10), per_class), strategy, beta=0.999)
    assert set(weights.values()) == {1.0}


@pytest.mark.parametrize("strategy", ["balanced", "sqrt_inverse", "effective_number"])
def test_every_strategy_has_mean_weight_one_over_training_samples(strategy):
    weights = class_weights(LABELS, strategy, beta=0.999)
    assert sample_mean(weights, LABELS) == pytest.approx(1.0)
    assert weights[9] > weights[0]  # rarer class, larger weight


def test_effective_number_with_beta_zero_is_uniform():
    weights = class_weights(LABELS, "effective_number", beta=0.0)
    assert np.allclose(list(weights.values()), 1.0)


def test_keys_are_python_ints():
    assert all(type(c) is int for c in class_weights(LABELS, "balanced", beta=0.999))


def test_the_params_gate_allows_exactly_the_strategies_implemented():
    assert typing.get_args(WeightsParams.model_fields["strategy"].annotation) == tuple(STRATEGIES)
