"""Real TensorFlow training at tiny size."""
import numpy as np
import pytest

from classweights.files import read_arrays
from classweights.model import build_model, load_model, predict_proba, train_arm, train_model
from tools.sandbox import shipped_params
from classweights.report import read_curves
from tests.fakes import fake_images

TRAIN = shipped_params({"train": {"epochs": 2, "batch_size": 32}}).train


@pytest.fixture(scope="module")
def splits():
    rng = np.random.default_rng(0)
    y_train = rng.permutation(np.repeat(np.arange(10), [40] * 5 + [8] * 5)).astype(np.uint8)
    y_val = np.repeat(np.arange(10), 2).astype(np.uint8)
    y_test = np.repeat(np.arange(10), 3).astype(np.uint8)
    return {"x_train": fake_images(y_train, 1), "y_train": y_train, "x_val": fake_images(y_val, 2), "y_val": y_val,
            "x_test": fake_images(y_test, 3), "y_test": y_test}


def test_model_takes_raw_uint8_images_and_is_the_notebooks_network():
    model = build_model(0.5)
    assert model.inputs[0].dtype == "uint8"
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Rescaling", "Reshape", "Conv2D", "MaxPooling2D", "Dropout", "Conv2D", "MaxPooling2D", "Dropout",
                     "Conv2D", "Flatten", "Dense", "Dropout", "Dense"]
    proba = model.predict(np.full((2, 28, 28), 255, np.uint8), verbose=0)
    assert proba.shape == (2, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_same_seed_same_model_different_seed_different_model(splits):
    first, _ = train_model(splits, TRAIN, seed=3)
    again, _ = train_model(splits, TRAIN, seed=3)
    other, _ = train_model(splits, TRAIN, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), again.get_weights()))
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])


def test_class_weights_change_the_training_loss(splits):
    _, plain = train_model(splits, TRAIN, seed=0)
    _, unit = train_model(splits, TRAIN, seed=0, class_weight={c: 1.0 for c in range(10)})
    _, weighted = train_model(splits, TRAIN, seed=0, class_weight={c: (5.0 if c >= 5 else 0.2) for c in range(10)})
    assert unit["loss"] == pytest.approx(plain["loss"], rel=1e-6)  # weights of 1 change nothing
    assert abs(weighted["loss"][0] - plain["loss"][0]) > 0.05  # real weights change the loss


def test_weights_read_back_from_json_with_string_keys_still_weigh(splits):
    weights = {c: (5.0 if c >= 5 else 0.2) for c in range(10)}
    _, int_keys = train_model(splits, TRAIN, seed=0, class_weight=weights)
    _, json_keys = train_model(splits, TRAIN, seed=0, class_weight={str(c): w for c, w in weights.items()})
    assert json_keys["loss"] == int_keys["loss"]  # Keras would silently weigh every sample 1.0


def test_train_arm_writes_model_predictions_and_curves_that_agree(splits, tmp_path):
    out = tmp_path / "seed_0"
    train_arm(splits, TRAIN, 0, out, class_weight={c: 1.0 for c in range(10)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_0"]  # no temporary left beside it
    proba = read_arrays(out / "test_proba.npz", ["proba"])["proba"]
    reloaded = load_model(out / "model.keras")
    assert np.allclose(predict_proba(reloaded, splits["x_test"]), proba, atol=1e-6)
    curves = read_curves(out / "live")
    assert len(curves["loss"]) == TRAIN.epochs and len(curves["val_accuracy"]) == TRAIN.epochs


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
