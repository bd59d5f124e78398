"""The remedy losses, each checked against an independent computation: Keras' own focal loss,
LDAM's margins worked out by hand from the paper's formula, and Balanced Softmax in NumPy."""
import keras
import numpy as np
import pytest
from scipy.special import log_softmax

from classweights import losses
from classweights.remedy import Remedy
from tools.sandbox import shipped_params

# Logits where the true class is likely, unlikely and in between: a formula that mixes up p_y
# with another class's probability, or drops a factor, gives other numbers on these rows.
LOGITS = np.array([[2.0, -1.0, 0.5, 0.0], [-0.5, 1.5, 0.2, -2.0], [0.1, 0.3, -0.7, 3.0], [1.0, 1.0, 1.0, -1.0]],
                  dtype=np.float32)
LABELS = np.array([0, 2, 1, 3])
COUNTS = np.array([16, 81, 625, 10000])  # fourth roots 2, 3, 5, 10: margins by hand below


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_loss_is_keras_categorical_focal_crossentropy_without_alpha(gamma):
    keras_focal = keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=gamma, from_logits=True, reduction=None)
    expected = np.asarray(keras_focal(keras.ops.one_hot(LABELS, 4), LOGITS))
    ours = np.asarray(losses.focal_loss(LABELS, LOGITS, gamma))
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    if gamma == 0:  # and at gamma 0 it is cross-entropy
        np.testing.assert_allclose(ours, -log_softmax(LOGITS, axis=1)[np.arange(4), LABELS], rtol=1e-5)


def focal_gradient_by_hand(labels, logits, gamma):
    """dL/dz of −(1 − p_y)^gamma · log p_y in float64: with dp_y/dz = p_y (e_y − p),
    gamma (1 − p_y)^(gamma − 1) p_y log p_y (e_y − p) − (1 − p_y)^gamma (e_y − p)."""
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(log_softmax(z, axis=1))
    e_y = np.eye(z.shape[1])[labels]
    p_y = p[np.arange(len(z)), labels][:, None]
    rest = -np.expm1(np.log(p_y))  # 1 − p_y without cancellation
    return gamma * rest ** (gamma - 1) * p_y * np.log(p_y) * (e_y - p) - rest ** gamma * (e_y - p)


def focal_gradient(labels, logits, gamma):
    import tensorflow as tf

    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = losses.focal_loss(labels, z, gamma)
    return tape.gradient(loss, z).numpy()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_focal_gradient_is_finite_where_the_true_class_probability_rounds_to_one(gamma):
    # logits [18, 0, 0]: p_0 = 1 − 3e-8 rounds to 1 in float32, so 1 − p_0 = 0 and (1 − p)^gamma's
    # gradient gamma · 0^(gamma − 1) is infinite below gamma 1: NaN for every logit before the fix
    logits = np.array([[18.0, 0.0, 0.0]], dtype=np.float32)
    gradient = focal_gradient(np.array([0]), logits, gamma)
    assert np.isfinite(gradient).all(), gradient
    # the float64 gradient there is below 1e-7 for every gamma: float32 gives it to that
    np.testing.assert_allclose(gradient, focal_gradient_by_hand([0], logits, gamma), atol=1e-7)
    if gamma == 0:  # and at gamma 0 exactly cross-entropy's (softmax − one-hot: 1.5e-8 off the true class)
        import tensorflow as tf

        z = tf.Variable(logits)
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(np.array([0]), z, from_logits=True)
        np.testing.assert_array_equal(gradient, tape.gradient(loss, z).numpy())
        assert gradient[0, 1] > 0


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_gradient_elsewhere_is_the_formula_s(gamma):
    np.testing.assert_allclose(focal_gradient(LABELS, LOGITS, gamma), focal_gradient_by_hand(LABELS, LOGITS, gamma),
                               rtol=1e-4, atol=1e-7)


def test_ldam_margins_are_c_over_the_fourth_root_of_the_count_with_the_largest_max_margin():
    # 1/n^(1/4) = 1/2, 1/3, 1/5, 1/10; the rarest class's 1/2 scaled to max_margin 0.5 leaves C = 1
    np.testing.assert_allclose(losses.ldam_margins(COUNTS, 0.5), [0.5, 1 / 3, 0.2, 0.1], rtol=1e-12)
    np.testing.assert_allclose(losses.ldam_margins(COUNTS, 0.2), [0.2, 0.4 / 3, 0.08, 0.04], rtol=1e-12)


def test_ldam_loss_lowers_only_the_true_class_s_cosine_by_its_margin_then_scales():
    cosine = np.tanh(LOGITS)  # cosines lie in [-1, 1]
    margins = losses.ldam_margins(COUNTS, 0.5)
    shifted = cosine.astype(np.float64)
    shifted[np.arange(4), LABELS] -= margins[LABELS]  # labels 0, 2, 1, 3: margins 0.5, 0.2, 1/3, 0.1
    expected = -log_softmax(30 * shifted, axis=1)[np.arange(4), LABELS]
    np.testing.assert_allclose(np.asarray(losses.ldam_loss(LABELS, cosine, margins, 30.0)), expected, rtol=1e-4)


def test_logit_adjusted_loss_at_tau_one_is_balanced_softmax():
    # Balanced Softmax (Ren et al. 2020): -log( n_y e^z_y / sum_j n_j e^z_j )
    weighted = COUNTS * np.exp(LOGITS.astype(np.float64))
    expected = -np.log(weighted[np.arange(4), LABELS] / weighted.sum(axis=1))
    prior = losses.log_prior(COUNTS)
    np.testing.assert_allclose(np.asarray(losses.logit_adjusted_loss(LABELS, LOGITS, prior, 1.0)), expected, rtol=1e-5)
    # tau scales the adjustment: at 2 the counts enter squared
    squared = COUNTS.astype(np.float64) ** 2 * np.exp(LOGITS.astype(np.float64))
    np.testing.assert_allclose(np.asarray(losses.logit_adjusted_loss(LABELS, LOGITS, prior, 2.0)),
                               -np.log(squared[np.arange(4), LABELS] / squared.sum(axis=1)), rtol=1e-5)


@pytest.mark.parametrize("rows", [slice(0, 1), slice(1, 4)], ids=["one example", "fewer examples than classes"])
def test_every_loss_gives_each_example_its_own_value_in_the_logits_dtype(rows):
    def remedy_losses(labels, logits):
        return {"focal": losses.focal_loss(labels, logits, 2.0),
                "ldam": losses.ldam_loss(labels, np.tanh(logits), losses.ldam_margins(COUNTS, 0.5), 30.0),
                "logit_adjusted": losses.logit_adjusted_loss(labels, logits, losses.log_prior(COUNTS), 1.0)}

    whole = remedy_losses(LABELS, LOGITS)
    for name, value in remedy_losses(LABELS[rows], LOGITS[rows]).items():
        assert tuple(value.shape) == (len(LABELS[rows]),) and keras.backend.standardize_dtype(value.dtype) == "float32", name
        np.testing.assert_allclose(np.asarray(value), np.asarray(whole[name])[rows], rtol=1e-6, err_msg=name)


def test_log_prior_and_training_counts():
    np.testing.assert_allclose(losses.log_prior([1, 3]), np.log([0.25, 0.75]))
    assert losses.training_counts(np.array([2, 0, 2, 2], np.uint8), 4).tolist() == [1, 0, 3, 0]


@pytest.mark.parametrize("name, expected", [
    ("focal", lambda: losses.focal_loss(LABELS, LOGITS, 2.5)),
    ("ldam", lambda: losses.ldam_loss(LABELS, LOGITS, losses.ldam_margins(COUNTS, 0.3), 10.0)),
    ("logit_adjusted", lambda: losses.logit_adjusted_loss(LABELS, LOGITS, losses.log_prior(COUNTS), 0.7)),
])
def test_the_loss_params_choose_the_loss_and_its_own_keys(name, expected):
    params = shipped_params({"loss": {"name": name, "focal_gamma": 2.5, "ldam_max_margin": 0.3, "ldam_scale": 10.0,
                                      "la_tau": 0.7},
                             "weights": {"apply": "none" if name == "logit_adjusted" else "loss"}})
    chosen = Remedy.of(params).keras_loss(COUNTS)
    np.testing.assert_allclose(np.asarray(chosen(LABELS, LOGITS)), np.asarray(expected()), rtol=1e-6)
    assert Remedy.of(shipped_params()).keras_loss(COUNTS) is None  # cross-entropy: Keras' own
