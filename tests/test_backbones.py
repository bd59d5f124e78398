"""Every backbone trained for real at tiny size: one seed gives every arm (unweighted, weighted,
the remedy losses) the same initial weights, the network's layers are the ones named, and a
backbone on the wrong kind of input is one line."""
import keras
import numpy as np
import pytest

from classweights.model import train_model
from tests.fakes import fake_images
from tools.sandbox import shipped_params

WEIGHTS = {c: (5.0 if c >= 5 else 0.2) for c in range(10)}  # unused classes' weights are never looked up


def image_splits():
    rng = np.random.default_rng(0)
    y_train = rng.permutation(np.repeat(np.arange(10), [12] * 5 + [4] * 5)).astype(np.uint8)
    y_val = np.repeat(np.arange(10), 1).astype(np.uint8)
    return {"x_train": fake_images(y_train, 1), "y_train": y_train, "x_val": fake_images(y_val, 2), "y_val": y_val}


class FirstWeights(keras.callbacks.Callback):
    """The trained network's weights as the first fit begins, by layer position."""

    def on_train_begin(self, logs=None):
        if not hasattr(self, "layers"):
            self.layers = [[w.copy() for w in layer.get_weights()] for layer in self.model.layers]


# (loss params, weights.apply): the arms of a seed besides the unweighted one
ARMS = {"weighted": ({"name": "cross_entropy"}, "loss"),
        "focal": ({"name": "focal"}, "loss"),
        "ldam": ({"name": "ldam"}, "loss"),
        "logit_adjusted": ({"name": "logit_adjusted"}, "none")}
def feature_splits():
    """load_wine's rows, an imbalanced few per class for training."""
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    train = np.concatenate([np.flatnonzero(y == c)[:n] for c, n in enumerate([30, 30, 6])])
    val = np.concatenate([np.flatnonzero(y == c)[-3:] for c in range(3)])
    return {"x_train": x[train].astype(np.float32), "y_train": y[train].astype(np.uint8),
            "x_val": x[val].astype(np.float32), "y_val": y[val].astype(np.uint8)}


# backbone: (its model params, the data it takes)
BACKBONES = {"cnn": ({}, image_splits), "resnet": ({"resnet_depth": 8}, image_splits),
             "mlp": ({"mlp_hidden": [8, 8]}, feature_splits)}


def start(backbone, arm):
    """The initial weights of one arm, seed 0, at 1 epoch."""
    model, splits = BACKBONES[backbone]
    loss, apply = ARMS.get(arm, ({"name": "cross_entropy"}, "loss"))
    params = shipped_params({"train": {"epochs": 1, "batch_size": 16}, "model": {"backbone": backbone, **model},
                             "loss": loss, "weights": {"apply": apply}})
    first = FirstWeights()
    weights = None if arm == "unweighted" or apply == "none" else WEIGHTS
    train_model(splits(), params.train, 0, weights, apply, callbacks=[first], loss=params.loss, network=params.model)
    return first.layers


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_arm_of_a_seed_starts_from_the_same_weights(backbone):
    unweighted = start(backbone, "unweighted")
    for arm in ARMS:
        other = start(backbone, arm)
        for position, (ours, theirs) in enumerate(zip(unweighted, other, strict=True)):
            if arm == "ldam" and position == len(unweighted) - 1:
                ours = ours[:1]  # LDAM's cosine head: the softmax head's kernel, no bias
            assert len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs)), (arm, position)
    assert any(w.size for layer in unweighted for w in layer)


@pytest.mark.parametrize("depth, parameters", [(20, 0.27e6), (32, 0.46e6)])
def test_resnet_has_6n_plus_2_weight_layers_and_the_papers_size(depth, parameters):
    from classweights.model import build_model

    network = shipped_params({"model": {"backbone": "resnet", "resnet_depth": depth}}).model
    model = build_model(0.0, "float32", (32, 32, 3), 10, network)  # CIFAR-10's shape
    backbone = model.layers[2]
    kinds = [type(layer).__name__ for layer in backbone.layers]
    assert kinds.count("Conv2D") + 1 == depth  # + the head's dense layer
    assert kinds.count("ZeroPadShortcut") == 2 and kinds[-1] == "GlobalAveragePooling2D"
    assert model.count_params() == pytest.approx(parameters, rel=0.02)  # He et al. 2016, Table 6: 0.27M, 0.46M


def test_the_zero_padding_shortcut_subsamples_and_adds_empty_channels():
    from classweights.model import ZeroPadShortcut

    x = np.arange(2 * 4 * 4 * 16, dtype=np.float32).reshape(2, 4, 4, 16)
    out = np.asarray(ZeroPadShortcut(32)(x))
    assert out.shape == (2, 2, 2, 32)
    assert np.array_equal(out[..., 8:24], x[:, ::2, ::2, :]) and not out[..., :8].any() and not out[..., 24:].any()


def test_a_trained_resnet_saves_and_loads_in_safe_mode_with_the_same_predictions(tmp_path):
    from classweights.model import load_model, predict_proba, save_model

    params = shipped_params({"train": {"epochs": 1, "batch_size": 16}, "model": {"backbone": "resnet",
                                                                                 "resnet_depth": 8}})
    splits = image_splits()
    model, _ = train_model(splits, params.train, 0, network=params.model)
    save_model(model, tmp_path / "model.keras")
    np.testing.assert_allclose(predict_proba(load_model(tmp_path / "model.keras"), splits["x_val"]),
                               predict_proba(model, splits["x_val"]), atol=1e-6)
