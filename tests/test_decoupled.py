"""Kang et al. 2020's decoupled remedies, both evaluate-time arms from the unweighted models: the
τ-normalised classifier against a hand computation and a real tiny trained network, and classifier
re-training (cRT) on a real tiny network: backbone frozen, head re-trained on class-balanced batches."""
import numpy as np
import pytest
from scipy import stats
from scipy.special import softmax

from classweights.errors import UserError
from classweights.evaluation import (TAU_NORMALISED, tau_normalised_arm, tau_normalised_kernel, tau_normalised_logits,
                                     tau_normalised_proba, tune_tau_norm)
from classweights.model import (class_balanced_weight, head_inputs, load_model, make_dataset, predict_proba,
                                retrain_classifier, save_model)
from classweights.params import parse_params
from classweights.report import arm_labels
from tests.trained import TRAIN
from tools.sandbox import committed_params, merged, shipped_params

# Two features, three classes; the columns (class weight vectors) have norms 5, 2 and 1. Row norms
# (√10, √20) differ, so normalising the wrong axis gives other numbers.
KERNEL = np.array([[3.0, 0.0, 1.0],
                   [4.0, 2.0, 0.0]])


def test_tau_normalisation_divides_each_class_column_by_its_norm_to_the_power_tau():
    np.testing.assert_array_equal(tau_normalised_kernel(KERNEL, 0), KERNEL)  # τ = 0: as trained
    unit = tau_normalised_kernel(KERNEL, 1)
    np.testing.assert_allclose(unit, [[0.6, 0, 1], [0.8, 1, 0]])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=0), 1)  # τ = 1: unit-norm columns
    np.testing.assert_allclose(tau_normalised_kernel(KERNEL, 0.5),
                               [[3 / 5 ** 0.5, 0, 1], [4 / 5 ** 0.5, 2 / 2 ** 0.5, 0]])
    # the feature (0, 1) scores (4, 2, 0) as trained: class 0; with unit columns (0.8, 1, 0): class 1
    np.testing.assert_allclose(tau_normalised_logits([[0, 1]], KERNEL, 0), [[4, 2, 0]])
    np.testing.assert_allclose(tau_normalised_logits([[0, 1]], KERNEL, 1), [[0.8, 1, 0]])
    np.testing.assert_allclose(tau_normalised_proba([[0, 1]], KERNEL, 1), softmax([[0.8, 1, 0]], axis=1))


def test_a_tuned_tau_norm_is_chosen_on_validation_and_applied_to_the_test_features():
    # validation: (0, 1) is class 1, (1, 1) class 0 → both right only at τ = 1 (τ = 0 calls both 0)
    y_val, val = np.array([1, 0]), np.array([[0.0, 1.0], [1.0, 1.0]])
    assert tune_tau_norm(y_val, val, KERNEL, [0, 0.5, 1]) == 1
    assert tune_tau_norm(np.array([0, 0]), val, KERNEL, [1, 0]) == 0  # all class 0: τ = 0 (a tie: the smaller)
    test = np.array([[2.0, 1.0], [0.0, 3.0]])
    heads = {"0": {"kernel": KERNEL, "val": val, "test": test}}
    proba, taus = tau_normalised_arm(heads, "tuned", y_val, [0, 0.5, 1])
    assert taus == {"0": 1}
    np.testing.assert_allclose(proba["0"], tau_normalised_proba(test, KERNEL, 1))
    proba, taus = tau_normalised_arm(heads, 0.5)
    assert taus is None
    np.testing.assert_allclose(proba["0"], tau_normalised_proba(test, KERNEL, 0.5))


@pytest.fixture(scope="module")
def unweighted(trained_unweighted, tmp_path_factory):
    """A real unweighted training (seed 0, tests/trained.py), saved and read back as evaluate and cRT read it."""
    path = tmp_path_factory.mktemp("unweighted") / "model.keras"
    save_model(trained_unweighted.model, path)
    return path


def test_tau_norm_of_a_trained_network_is_its_backbone_features_times_the_rescaled_kernel(splits, unweighted):
    model = load_model(unweighted)
    features, kernel = head_inputs(model, splits["x_test"])
    bias = model.layers[-1].get_weights()[1]
    assert features.shape == (30, kernel.shape[0]) and kernel.shape[1] == 10
    # these are the head's inputs: with the bias, they give the network's own predictions
    np.testing.assert_allclose(softmax(features.astype(np.float64) @ kernel + bias, axis=1),
                               predict_proba(model, splits["x_test"]), atol=1e-5)
    # τ = 0.7 worked column by column
    manual = np.empty_like(kernel, dtype=np.float64)
    for k in range(kernel.shape[1]):
        manual[:, k] = kernel[:, k] / np.sqrt(np.sum(kernel[:, k].astype(np.float64) ** 2)) ** 0.7
    expected = softmax(features.astype(np.float64) @ manual, axis=1)
    np.testing.assert_allclose(tau_normalised_proba(features, kernel, 0.7), expected, rtol=1e-10)
    assert not np.allclose(expected, softmax(features.astype(np.float64) @ kernel, axis=1))


# 400 and 40 images a class, and one class with none
IMBALANCED = np.repeat(np.arange(10), [400] * 5 + [40] * 4 + [0]).astype(np.uint8)


def test_class_balanced_batches_draw_every_class_equally_often():
    weight = class_balanced_weight(IMBALANCED, 10)
    assert weight[0] == 1 / 400 and weight[5] == 1 / 40 and weight[9] == 0
    x = np.zeros((len(IMBALANCED), 2, 2), np.uint8)
    drawn = np.concatenate([labels.numpy() for _, labels in
                            make_dataset(x, IMBALANCED, 32, shuffle_seed=0, sampling_weight=weight).repeat(3)])
    observed = np.bincount(drawn, minlength=10)
    assert observed[9] == 0
    assert stats.chisquare(observed[:9], np.full(9, len(drawn) / 9)).pvalue > 0.001
    counts = np.bincount(IMBALANCED, minlength=10)[:9]
    assert stats.chisquare(observed[:9], len(drawn) * counts / counts.sum()).pvalue < 1e-9  # not as the data come


def test_crt_retrains_only_the_head_and_is_fixed_by_the_seed(splits, unweighted):
    before = load_model(unweighted)
    retrained, history = retrain_classifier(load_model(unweighted), splits, TRAIN, seed=0, epochs=3)
    again, _ = retrain_classifier(load_model(unweighted), splits, TRAIN, seed=0, epochs=3)
    other, _ = retrain_classifier(load_model(unweighted), splits, TRAIN, seed=1, epochs=3)
    assert len(history["loss"]) == 3
    for old, new in zip(before.layers[:-1], retrained.layers[:-1]):  # the backbone: not a bit changed
        assert all(np.array_equal(a, b) for a, b in zip(old.get_weights(), new.get_weights()))
    assert not np.allclose(before.layers[-1].get_weights()[0], retrained.layers[-1].get_weights()[0])
    assert all(np.array_equal(a, b) for a, b in zip(retrained.get_weights(), again.get_weights()))
    assert not np.array_equal(retrained.layers[-1].get_weights()[0], other.layers[-1].get_weights()[0])


def test_crt_retrains_with_the_run_s_optimizer_sgd_included(splits, unweighted):
    sgd = shipped_params({"train": {"epochs": 2, "batch_size": 32, "optimizer": "sgd", "learning_rate": 0.05,
                                    "momentum": 0.9, "weight_decay": 2e-4}}).train
    before = load_model(unweighted)
    retrained, history = retrain_classifier(load_model(unweighted), splits, sgd, seed=0, epochs=2)
    assert len(history["loss"]) == 2 and np.all(np.isfinite(history["loss"]))
    assert not np.allclose(before.layers[-1].get_weights()[0], retrained.layers[-1].get_weights()[0])


def test_the_tau_normalised_arm_is_labelled_and_off_by_default():
    assert TAU_NORMALISED not in arm_labels(shipped_params())
    labels = arm_labels(shipped_params({"evaluate": {"tau_norm": "tuned"}}))
    assert labels[TAU_NORMALISED] == "τ-normalised classifier (τ tuned on validation)"
    assert arm_labels(shipped_params({"evaluate": {"tau_norm": 0.5}}))[TAU_NORMALISED] == \
        "τ-normalised classifier (τ = 0.5)"


@pytest.mark.parametrize("evaluate, words", [
    ({"tau_norm": "tune"}, "evaluate.tau_norm = 'tune': must be null (the arm off), a finite number >= 0"),
    ({"tau_norm": -1}, "evaluate.tau_norm = -1: must be null"),
    ({"tau_norm": True}, "evaluate.tau_norm = True: must be null"),
    ({"tau_norm_grid": []}, "evaluate.tau_norm_grid = []: must list at least one τ"),
    ({"tau_norm_grid": [0, -0.5]}, "evaluate.tau_norm_grid = [0, -0.5]: τ -0.5 is not allowed"),
])
def test_a_bad_tau_norm_or_grid_is_one_line_naming_the_key(evaluate, words):
    with pytest.raises(UserError) as caught:
        parse_params(merged(committed_params(), {"evaluate": evaluate}))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_crt_in_evaluate_gives_the_retrained_network_s_own_predictions(splits, unweighted):
    from classweights.evaluation import linear_proba
    from classweights.model import train_head

    model = load_model(unweighted)
    features = {split: head_inputs(model, splits[f"x_{split}"])[0] for split in ("train", "val", "test")}
    kernel, bias, _ = train_head(features["train"], splits["y_train"], features["val"], splits["y_val"], 10,
                                 model.layers[-2].rate, TRAIN, seed=0, epochs=2)
    retrained, _ = retrain_classifier(model, splits, TRAIN, seed=0, epochs=2)
    np.testing.assert_array_equal(retrained.layers[-1].get_weights()[0], kernel)  # the same head, seed for seed
    np.testing.assert_allclose(linear_proba(features["test"], kernel, bias), predict_proba(retrained, splits["x_test"]),
                               atol=1e-5)


def test_crt_is_labelled_with_its_epochs_and_off_by_default():
    from classweights.evaluation import CRT

    assert CRT not in arm_labels(shipped_params())
    assert arm_labels(shipped_params({"evaluate": {"crt_epochs": 10}}))[CRT] == \
        "cRT (classifier re-trained class-balanced, 10 epochs)"


@pytest.mark.parametrize("value", [-1, "2", True, 1.5])
def test_a_bad_crt_epochs_is_one_line_naming_the_key(value):
    with pytest.raises(UserError) as caught:
        parse_params(merged(committed_params(), {"evaluate": {"crt_epochs": value}}))
    message = str(caught.value)
    assert message == f"params.yaml: evaluate.crt_epochs = {value!r}: must be a whole number of epochs >= 0 (0 turns " \
                      "cRT off; Kang et al. re-train 10)"


def test_switching_the_decoupled_arms_on_reruns_only_evaluate_and_pairs_them_with_the_unweighted_arm(project):
    import json

    import keras
    from sklearn.metrics import balanced_accuracy_score

    from tools.sandbox import dvc, ran_stages, set_params

    set_params(project, {"evaluate": {"tau_norm": 1, "crt_epochs": 2}})
    assert ran_stages(dvc(project, "repro")) == ["check_params", "evaluate"]  # no training
    details = project / "metrics/details"
    assert not (project / "metrics/tau_normalised.json").exists() and not (project / "metrics/crt.json").exists()
    comparison = json.loads((project / "metrics/comparison.json").read_text())
    assert {"tau_normalised_vs_unweighted", "crt_vs_unweighted"} <= set(comparison)
    seconds = json.loads((project / "metrics/training_seconds.json").read_text())
    assert set(seconds["crt"]["seeds"]) == {"0", "1"}
    summary = (project / "reports/summary.md").read_text()
    assert "τ-normalised classifier (τ = 1)" in summary and "cRT (classifier re-trained class-balanced, 2 epochs)" in summary

    # τ = 1 independently: Keras' features, the kernel's columns made unit-norm, scikit-learn's score
    tau_norm = json.loads((details / "tau_normalised.json").read_text())
    splits = np.load(project / "data/splits.npz")
    for seed in ("0", "1"):
        model = keras.models.load_model(project / f"models/unweighted/seed_{seed}/model.keras")
        features = keras.Model(model.inputs, model.layers[-2].output).predict(splits["x_test"], verbose=0)
        kernel = model.layers[-1].get_weights()[0]
        predicted = (features @ (kernel / np.linalg.norm(kernel, axis=0))).argmax(axis=1)
        assert tau_norm["seeds"][seed]["balanced_accuracy"] == pytest.approx(
            balanced_accuracy_score(splits["y_test"], predicted), abs=1e-12)

    # cRT again from scratch: the same bytes (seeded, deterministic)
    before = (details / "crt.json").read_bytes()
    dvc(project, "repro", "--force", "--single-item", "evaluate")
    assert (details / "crt.json").read_bytes() == before


def test_the_sweep_ranks_the_decoupled_arms_as_remedies_of_their_own():
    from classweights import ranking

    per_seed = {arm: {"0": {"balanced_accuracy": 0.5}} for arm in ("unweighted", TAU_NORMALISED, "crt")}
    record = {"name": "exp", "params": merged(committed_params(), {"evaluate": {"tau_norm": "tuned", "crt_epochs": 2}}),
              "per_seed": per_seed, "metrics": {"training_seconds": {"unweighted": {"mean": 30.0}, "crt": {"mean": 1.5}}}}
    remedies = ranking.remedies_of([record])
    assert remedies["τ-normalised classifier (τ tuned on validation)"][1] == 30.0  # the unweighted training it reuses
    assert remedies["cRT (classifier re-trained class-balanced, 2 epochs)"][1] == 1.5  # its head's re-training
