import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from classweights.cli import UserError
from classweights.weights import class_weights, weights_from_json

LABELS = np.repeat(np.arange(10), [400] * 5 + [40] * 3 + [10, 4])


def sample_mean(weights, labels):
    return np.mean([weights[int(c)] for c in labels])


def test_balanced_equals_scikit_learn_and_the_formula():
    weights = class_weights(LABELS, "balanced")
    expected = compute_class_weight("balanced", classes=np.arange(10), y=LABELS)
    assert np.allclose([weights[c] for c in range(10)], expected)
    counts = np.bincount(LABELS)
    assert np.allclose([weights[c] for c in range(10)], len(LABELS) / (10 * counts))


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
def test_every_strategy_has_mean_weight_one_over_training_samples(strategy):
    weights = class_weights(LABELS, strategy)
    assert sample_mean(weights, LABELS) == pytest.approx(1.0)
    assert weights[9] > weights[0]  # rarer class, larger weight


def test_effective_number_with_beta_zero_is_uniform():
    weights = class_weights(LABELS, "effective_number", beta=0.0)
    assert np.allclose(list(weights.values()), 1.0)


def test_keys_are_python_ints_and_json_round_trip_restores_them():
    weights = class_weights(LABELS, "balanced")
    assert all(type(c) is int for c in weights)
    from_json = weights_from_json({str(c): w for c, w in weights.items()})
    assert from_json == weights and all(type(c) is int for c in from_json)


def test_effective_number_uses_beta_0_999_by_default():
    assert class_weights(LABELS, "effective_number") == class_weights(LABELS, "effective_number", beta=0.999)
    assert class_weights(LABELS, "effective_number") != class_weights(LABELS, "effective_number", beta=0.99)


def test_an_unknown_strategy_is_a_user_error_listing_the_allowed_ones():
    with pytest.raises(UserError) as raised:
        class_weights(LABELS, "inverse")
    assert str(raised.value) == "weights.strategy = 'inverse': allowed: balanced, sqrt_inverse, effective_number"
