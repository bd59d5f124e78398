"""The remedy arm trained for real at tiny size: deferred weights switch on at exactly the named
epoch, every remedy loss trains and saves a model that predicts probabilities, and a loss that
turns NaN stops the training with one line and nothing written."""
import re

import numpy as np
import pytest

from classweights.errors import UserError
from classweights.files import read_arrays
from classweights.model import CosineDense, load_model, predict_proba, train_arm, train_model
from classweights.remedy import COSINE, LOGITS, SOFTMAX, Head, Remedy
from classweights.report import read_curves
from tests.callbacks import Snapshots, same
from tests.trained import WEIGHTS
from tools.sandbox import shipped_params


def remedy(loss="cross_entropy", apply="loss", defer_epoch=1, **keys):
    """Validated params with the remedy arm's keys set: (train, the remedy arm's Remedy)."""
    params = shipped_params({"train": {"epochs": 2, "batch_size": 32}, "loss": {"name": loss, **keys},
                             "weights": {"apply": apply, "defer_epoch": defer_epoch}})
    return params.train, Remedy.of(params)


@pytest.mark.parametrize("apply", ["loss", "sampling"])
def test_deferred_weights_switch_on_at_exactly_the_named_epoch(splits, trained_unweighted, trained_by_loss,
                                                               trained_by_sampling, apply):
    train, deferral = remedy(apply=apply, defer_epoch=2)
    one_epoch, two_epochs = trained_unweighted.after_epoch  # seed 0, as train below
    snapshots = Snapshots()
    deferred, history = train_model(splits, train, 0, WEIGHTS, deferral, callbacks=[snapshots])
    # epoch 1 is the unweighted arm's epoch 1, to the bit; epoch 2 is weighted
    assert same(snapshots.after_epoch[0], one_epoch)
    assert not np.array_equal(deferred.get_weights()[0], two_epochs[0])
    assert len(snapshots.after_epoch) == len(history["loss"]) == 2
    # without deferral (defer_epoch 1, the shared trainings) the weights act from the first epoch
    from_start = {"loss": trained_by_loss, "sampling": trained_by_sampling}[apply]
    assert not np.array_equal(from_start.after_epoch[0][0], one_epoch[0])


@pytest.mark.parametrize("name, apply, head", [
    ("focal", "loss", "Dense"),
    ("ldam", "loss", "CosineDense"),
    ("logit_adjusted", "none", "Dense"),
])
def test_every_remedy_loss_trains_and_saves_a_model_that_predicts_probabilities(splits, tmp_path, name, apply, head):
    train, arm = remedy(name, apply, defer_epoch=2 if apply != "none" else 1)
    out = tmp_path / "seed_0"
    train_arm(splits, train, 0, out, WEIGHTS, arm, label="train_weighted@0")
    proba = read_arrays(out / "test_proba.npz", ["proba"])["proba"]
    assert proba.shape == (30, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-5) and (proba >= 0).all()
    reloaded = load_model(out / "model.keras")
    kinds = [type(layer).__name__ for layer in reloaded.layers]
    assert kinds[-1] == "Softmax" and head in kinds
    assert kinds[-3:-1] == ["CosineDense", "Rescaling"] if name == "ldam" else kinds[-2] == "Dense"
    np.testing.assert_allclose(predict_proba(reloaded, splits["x_test"]), proba, atol=1e-6)
    assert len(read_curves(out / "history.json")["loss"]) == train.epochs  # both fits logged, one row per epoch


def test_the_cosine_layer_gives_cosines():
    layer = CosineDense(3)
    features = np.array([[3.0, 4.0], [-1.0, 0.0]], np.float32)
    cosine = np.asarray(layer(features))
    kernel = np.asarray(layer.kernel)
    expected = (features / np.linalg.norm(features, axis=1, keepdims=True)) @ (kernel / np.linalg.norm(kernel, axis=0))
    np.testing.assert_allclose(cosine, expected, rtol=1e-5)
    assert np.abs(cosine).max() <= 1 + 1e-6


def test_a_loss_that_turns_nan_or_infinite_stops_with_one_line_naming_the_epoch_and_the_remedy(splits, tmp_path):
    train, ldam = remedy("ldam", ldam_scale=1e38)  # logits beyond float32: the loss overflows
    with pytest.raises(UserError) as caught:
        train_arm(splits, train, 0, tmp_path / "seed_0", WEIGHTS, ldam, label="train_weighted@0")
    message = str(caught.value)
    assert re.match(r"train_weighted@0: the training loss became (nan|inf) in epoch 1 with LDAM \(max margin 0.5, "
                    r"s = 1e\+38\) \+ balanced class weights applied to the loss; a smaller", message)
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_the_report_names_the_remedy_and_keeps_today_s_words_for_the_default():
    from classweights.report import arm_labels, describe_run

    cb_focal = shipped_params({"loss": {"name": "focal"}, "weights": {"strategy": "effective_number", "defer_epoch": 8}})
    assert arm_labels(cb_focal)["weighted"] == "focal γ=1 + effective_number weights (loss), deferred from epoch 8"
    assert describe_run(cb_focal) == ("mnist-sample, step imbalance, ratio 10; remedy focal loss (γ = 1) + "
                                      "effective_number (β = 0.999) class weights applied to the loss, from epoch 8; "
                                      "10 epochs, 10 seeds")
    ldam = shipped_params({"loss": {"name": "ldam"}, "weights": {"apply": "none"}})
    assert arm_labels(ldam)["weighted"] == "LDAM m=0.5 s=30"
    assert "; remedy LDAM (max margin 0.5, s = 30); " in describe_run(ldam)
    logit_adjusted = shipped_params({"loss": {"name": "logit_adjusted"}, "weights": {"apply": "none"}})
    assert "; remedy logit-adjusted loss (τ = 1); " in describe_run(logit_adjusted)
    default = shipped_params()
    assert arm_labels(default)["weighted"] == "weighted (loss)"
    assert "; balanced class weights applied to the loss; " in describe_run(default)


@pytest.mark.parametrize("overrides, label, phrase, head", [
    ({}, "weighted (loss)", "cross-entropy + balanced class weights applied to the loss", Head(SOFTMAX)),
    ({"loss": {"name": "focal", "focal_gamma": 2.0}, "weights": {"strategy": "effective_number", "defer_epoch": "decay"},
      "train": {"epochs": 8, "lr_schedule": "step", "lr_step_epochs": [6, 7]}},
     "focal γ=2 + effective_number weights (loss), deferred from epoch 6",
     "focal loss (γ = 2) + effective_number (β = 0.999) class weights applied to the loss, from epoch 6", Head(LOGITS)),
    ({"loss": {"name": "ldam", "ldam_scale": 10.0}, "weights": {"strategy": "sqrt_inverse", "apply": "sampling"}},
     "LDAM m=0.5 s=10 + sqrt_inverse weights (sampling)",
     "LDAM (max margin 0.5, s = 10) + sqrt_inverse class weights applied by class-balanced sampling", Head(COSINE, 10.0)),
    ({"loss": {"name": "logit_adjusted", "la_tau": 0.5}, "weights": {"apply": "none"}},
     "logit-adjusted loss τ=0.5", "logit-adjusted loss (τ = 0.5)", Head(LOGITS)),
])
def test_the_remedy_is_one_value_built_from_the_params_that_says_its_label_phrase_head_and_loss(
        overrides, label, phrase, head):
    remedy = Remedy.of(shipped_params(overrides))
    assert (remedy.label, remedy.phrase, remedy.head) == (label, phrase, head)
    # only cross-entropy from the first epoch is the ordinary fit, on Keras' own loss
    assert remedy.plain_fit == (label == "weighted (loss)")
    assert (remedy.keras_loss([40, 8]) is None) == (head == Head(SOFTMAX))
    assert remedy.weighted == ("weights (" in label or label == "weighted (loss)")


def test_the_unweighted_arm_s_remedy_is_cross_entropy_without_weights():
    plain = Remedy.unweighted()
    assert (plain.loss_phrase, plain.phrase, plain.label) == ("cross-entropy", "cross-entropy", "unweighted")
    assert not plain.weighted and plain.weights_phrase == "no class weights"
    assert plain.plain_fit and plain.head == Head(SOFTMAX) and plain.keras_loss([40, 8]) is None
    assert plain == Remedy()  # the defaults of train_model and train_arm
