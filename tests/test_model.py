"""Real TensorFlow training at tiny size."""
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from scipy import stats

from classweights.files import read_arrays
from classweights.remedy import Remedy
from classweights.model import (build_model, load_model, make_dataset, predict_proba, sampled_batches,
                                sampling_probabilities, save_model, train_arm, train_model)
from tools.sandbox import ROOT
from classweights.report import read_curves
from tests.trained import TRAIN, WEIGHTS, weighted


def test_model_takes_raw_uint8_images_and_is_the_notebooks_network():
    model = build_model(0.5)
    assert model.inputs[0].dtype == "uint8"
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Rescaling", "Reshape", "Conv2D", "MaxPooling2D", "Dropout", "Conv2D", "MaxPooling2D", "Dropout",
                     "Conv2D", "Flatten", "Dense", "Dropout", "Dense"]
    proba = model.predict(np.full((2, 28, 28), 255, np.uint8), verbose=0)
    assert proba.shape == (2, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_same_seed_same_model_and_saved_bytes_with_no_date_different_seed_different_model(splits, trained_unweighted,
                                                                                         tmp_path):
    first = trained_unweighted.model  # seed 0, trained earlier in this process
    again, _ = train_model(splits, TRAIN, seed=0)
    other, _ = train_model(splits, TRAIN, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), again.get_weights()))
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])
    # equal weights, but different Python objects (Keras writes their ids into config.json)
    # saved at different times
    save_model(first, tmp_path / "first.keras")
    save_model(again, tmp_path / "again.keras")
    assert (tmp_path / "first.keras").read_bytes() == (tmp_path / "again.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "first.keras") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert set(json.loads(archive.read("metadata.json"))) == {"keras_version"}
    reloaded = load_model(tmp_path / "first.keras")
    assert np.array_equal(predict_proba(reloaded, splits["x_test"]), predict_proba(first, splits["x_test"]))


def test_class_weights_change_the_training_loss_also_read_back_from_json_with_string_keys(
        splits, trained_unweighted, trained_by_loss):
    plain, by_weight = trained_unweighted.history, trained_by_loss.history  # seed 0; WEIGHTS on the loss
    _, unit = train_model(splits, TRAIN, seed=0, class_weight={c: 1.0 for c in range(10)}, remedy=weighted())
    _, json_keys = train_model(splits, TRAIN, seed=0, class_weight={str(c): w for c, w in WEIGHTS.items()},
                               remedy=weighted())
    assert unit["loss"] == pytest.approx(plain["loss"], rel=1e-6)  # weights of 1 change nothing
    assert abs(by_weight["loss"][0] - plain["loss"][0]) > 0.05  # real weights change the loss
    assert json_keys["loss"] == by_weight["loss"]  # Keras would silently weigh every sample 1.0


def test_train_arm_writes_model_predictions_and_curves_that_agree(splits, tmp_path, capsys):
    stale = tmp_path / ".seed_0.partial"  # what a hard kill of an earlier run left
    stale.mkdir()
    (stale / "history.json").write_text("half")
    out = tmp_path / "seed_0"
    train_arm(splits, TRAIN, 0, out, class_weight={c: 1.0 for c in range(10)}, remedy=weighted(),
              label="train_weighted@0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_0"]  # the stale partial is gone, no new one
    proba = read_arrays(out / "test_proba.npz", ["proba"])["proba"]
    reloaded = load_model(out / "model.keras")
    assert np.allclose(predict_proba(reloaded, splits["x_test"]), proba, atol=1e-6)
    curves = read_curves(out / "history.json")
    assert len(curves["loss"]) == TRAIN.epochs and len(curves["val_accuracy"]) == TRAIN.epochs
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "model.keras", "test_proba.npz", "train_pred.npz"]
    fitted = read_arrays(out / "train_pred.npz", ["pred"])["pred"]  # inference mode: what the model predicts now
    assert np.array_equal(fitted, predict_proba(reloaded, splits["x_train"]).argmax(axis=1))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[:2] for line in lines] == [["train_weighted@0", "epoch 1/2"], ["train_weighted@0", "epoch 2/2"]]
    assert lines[-1].split("  ")[2] == f"loss {curves['loss'][-1]:.2f}"
    assert lines[-1].split("  ")[3] == f"val_acc {curves['val_accuracy'][-1]:.2f}"


def test_training_uses_one_thread_of_each_kind():
    import tensorflow as tf

    assert TRAIN.threads == 1  # the shipped policy
    assert tf.config.threading.get_intra_op_parallelism_threads() == 1
    assert tf.config.threading.get_inter_op_parallelism_threads() == 1


def test_a_training_sets_train_threads_before_tensorflow_starts(subprocesses, tmp_path):
    """In a fresh process (thread pools are fixed once TensorFlow runs its first operation)."""
    script = """
import numpy as np
import tensorflow as tf
from classweights.model import train_model
from tests.fakes import fake_images
from tools.sandbox import shipped_params

y = np.repeat(np.arange(10), 2).astype(np.uint8)
splits = {"x_train": fake_images(y, 1), "y_train": y, "x_val": fake_images(y, 2), "y_val": y}
train_model(splits, shipped_params({"train": {"epochs": 1, "threads": 3}}).train, seed=0)
print(tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads())
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["3", "3"]


# class sizes 400 / 40 and uneven weights: a draw proportional to count × weight differs
# from uniform sampling (counts alone) and from plain class balance (weights ignored)
SAMPLED_LABELS = np.repeat(np.arange(10), [400] * 5 + [40] * 5).astype(np.uint8)
SAMPLED_WEIGHTS = {c: (0.5 if c < 5 else 2.0 + c) for c in range(10)}


def drawn_labels(seed, epochs=1, batch_size=32):
    batches = sampled_batches(SAMPLED_LABELS, SAMPLED_WEIGHTS, seed, batch_size).repeat(epochs)
    return SAMPLED_LABELS[np.concatenate([b.numpy() for b in batches])]


def test_sampling_draws_classes_in_proportion_to_count_times_weight():
    drawn = drawn_labels(seed=0)
    assert len(drawn) == len(SAMPLED_LABELS)  # one epoch draws as many images as there are
    observed = np.bincount(drawn, minlength=10)
    counts = np.bincount(SAMPLED_LABELS, minlength=10)
    expected_share = counts * np.array([SAMPLED_WEIGHTS[c] for c in range(10)])
    expected_share = expected_share / expected_share.sum()
    assert np.allclose([sampling_probabilities(SAMPLED_LABELS, SAMPLED_WEIGHTS)[SAMPLED_LABELS == c].sum()
                        for c in range(10)], expected_share)
    assert stats.chisquare(observed, len(drawn) * expected_share).pvalue > 0.001
    # the same check rejects uniform sampling and plain balance
    assert stats.chisquare(observed, len(drawn) * counts / counts.sum()).pvalue < 1e-9
    assert stats.chisquare(observed, np.full(10, len(drawn) / 10)).pvalue < 1e-9


def test_sampling_is_fixed_by_the_seed_and_new_each_epoch():
    two_epochs = drawn_labels(seed=3, epochs=2)
    first, second = np.split(two_epochs, 2)
    assert np.array_equal(two_epochs, drawn_labels(seed=3, epochs=2))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, drawn_labels(seed=4))


def test_sampling_takes_as_many_steps_per_epoch_as_the_unweighted_arm(splits):
    def steps(**sampling):
        return sum(1 for _ in make_dataset(splits["x_train"], splits["y_train"], 32, shuffle_seed=0, **sampling))

    assert steps(sampling_weight=SAMPLED_WEIGHTS) == steps() == int(np.ceil(len(splits["y_train"]) / 32))


def test_sampling_arm_trains_deterministically_and_unlike_the_loss_arm(splits, trained_by_sampling, trained_by_loss):
    sampled, by_loss = trained_by_sampling.model, trained_by_loss.model  # seed 0, WEIGHTS
    again, _ = train_model(splits, TRAIN, seed=0, class_weight=WEIGHTS, remedy=weighted("sampling"))
    assert all(np.array_equal(a, b) for a, b in zip(sampled.get_weights(), again.get_weights()))
    assert not np.array_equal(sampled.get_weights()[0], by_loss.get_weights()[0])
    assert len(trained_by_sampling.history["loss"]) == TRAIN.epochs


def test_interrupted_training_leaves_nothing(splits, tmp_path, monkeypatch):
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise KeyboardInterrupt

    from classweights import model as model_module

    original = model_module.train_model
    monkeypatch.setattr(model_module, "train_model",
                        lambda *a, callbacks=(), **k: original(*a, callbacks=[*callbacks, Interrupt()], **k))
    with pytest.raises(KeyboardInterrupt):
        train_arm(splits, TRAIN, 0, tmp_path / "seed_0")
    assert list(tmp_path.iterdir()) == []
