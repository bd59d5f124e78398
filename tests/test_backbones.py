"""Every backbone trained for real at tiny size: one seed gives every arm (unweighted, weighted,
the remedy losses) the same initial weights, the network's layers are the ones named, and a
backbone on the wrong kind of input is one line."""
import keras
import numpy as np
import pytest

from classweights.errors import UserError
from classweights.model import build_model, train_model
from classweights.remedy import Remedy
from tests.callbacks import FirstWeights, Started
from tests.fakes import fake_images
from tools.sandbox import ROOT, shipped_params

WEIGHTS = {c: (5.0 if c >= 5 else 0.2) for c in range(10)}  # unused classes' weights are never looked up


def image_splits():
    rng = np.random.default_rng(0)
    y_train = rng.permutation(np.repeat(np.arange(10), [12] * 5 + [4] * 5)).astype(np.uint8)
    y_val = np.repeat(np.arange(10), 1).astype(np.uint8)
    return {"x_train": fake_images(y_train, 1), "y_train": y_train, "x_val": fake_images(y_val, 2), "y_val": y_val}


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


def colour_splits():
    """image_splits as 32 x 32 colour images: the smallest input of keras.applications' MobileNets."""
    return {key: np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=3) if key.startswith("x") else x
            for key, x in image_splits().items()}


# backbone: (its model params, the data it takes)
BACKBONES = {"cnn": ({}, image_splits), "resnet": ({"resnet_depth": 8}, image_splits),
             "mlp": ({"mlp_hidden": [8, 8]}, feature_splits), "python:networks.example:small_cnn": ({}, image_splits),
             "keras:MobileNetV3Small": ({}, colour_splits)}


def start(backbone, arm):
    """The initial weights of one arm, seed 0, as its training begins."""
    model, splits = BACKBONES[backbone]
    loss, apply = ARMS.get(arm, ({"name": "cross_entropy"}, "loss"))
    params = shipped_params({"train": {"epochs": 1, "batch_size": 16}, "model": {"backbone": backbone, **model},
                             "loss": loss, "weights": {"apply": apply}})
    first = FirstWeights(stop=True)
    remedy = Remedy.unweighted() if arm == "unweighted" else Remedy.of(params)
    with pytest.raises(Started):
        train_model(splits(), params.train, 0, WEIGHTS if remedy.weighted else None, remedy, callbacks=[first],
                    network=params.model)
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
    network = shipped_params({"model": {"backbone": "resnet", "resnet_depth": depth}}).model
    model = build_model(0.0, "float32", (32, 32, 3), 10, network)  # CIFAR-10's shape
    backbone = model.layers[2]
    kinds = [type(layer).__name__ for layer in backbone.layers]
    assert kinds.count("Conv2D") + 1 == depth  # + the head's dense layer
    assert kinds.count("ZeroPadShortcut") == 2 and kinds[-1] == "GlobalAveragePooling2D"
    assert model.count_params() == pytest.approx(parameters, rel=0.02)  # He et al. 2016, Table 6: 0.27M, 0.46M


def test_the_zero_padding_shortcut_subsamples_and_adds_empty_channels():
    from classweights.backbones import ZeroPadShortcut

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


USER_CODE = """
import keras
from keras import layers


def raises(shape):
    raise ValueError("no width given")


def number(shape):
    return 3


def feature_maps(shape):
    inputs = keras.Input(shape=shape)
    return keras.Model(inputs, layers.Conv2D(4, 3)(inputs))


def classifier(shape):
    inputs = keras.Input(shape=shape)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(layers.Flatten()(inputs)))


def vector(shape):
    inputs = keras.Input(shape=shape)
    return keras.Model(inputs, layers.Dense(5, activation="relu")(inputs))
"""


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """networks.user (the functions of USER_CODE) importable for this test only, from tmp_path."""
    import sys

    import networks

    (tmp_path / "user.py").write_text(USER_CODE)
    monkeypatch.setattr(networks, "__path__", [str(tmp_path), *networks.__path__])
    monkeypatch.delitem(sys.modules, "networks.user", raising=False)
    yield
    sys.modules.pop("networks.user", None)


@pytest.mark.parametrize("backbone, words", [
    ("python:networks.nothere:build", ["no module networks.nothere (networks/nothere.py not found)"]),
    ("python:networks.user:missing", ["networks.user has no function missing"]),
    ("python:networks.user:raises", ["raises((28, 28, 1)) raised ValueError: no width given"]),
    ("python:networks.user:number", ["number((28, 28, 1)) returned int, not a Keras model"]),
    ("python:networks.user:feature_maps", ["output is (None, 26, 26, 4)", "not one feature vector per input"]),
    ("python:networks.user:classifier", ["ends in a softmax layer", "return features: the head is ours"]),
])
def test_your_own_backbone_that_cannot_serve_is_one_line(user_code, backbone, words):
    network = shipped_params({"model": {"backbone": backbone}}).model
    with pytest.raises(UserError) as caught:
        build_model(0.5, "float32", (28, 28), 10, network)
    message = str(caught.value)
    assert message.startswith(f"model.backbone = {backbone!r}: ") and "\n" not in message
    assert all(word in message for word in words), message


def test_your_own_backbone_on_feature_vectors_gets_them_standardised(user_code):
    network = shipped_params({"model": {"backbone": "python:networks.user:vector"}}).model
    model = build_model(0.0, "float32", (13,), 3, network)
    assert [type(layer).__name__ for layer in model.layers] == ["Normalization", "Functional", "Dropout", "Dense"]


def test_your_own_backbone_trains_under_dvc_repro_and_an_edit_of_it_re_trains_only(subprocesses, tmp_path):
    import json

    from tools.sandbox import ONE_SEED, commit, dvc, make_project, ran_stages

    project = make_project(tmp_path / "project", {**ONE_SEED, "model": {"backbone": "python:networks.mine:build"}})
    code = (ROOT / "networks/example.py").read_text().replace("def small_cnn(", "def build(")
    (project / "networks/mine.py").write_text(code)
    commit(project, "my backbone")
    first = dvc(project, "repro")
    assert {"train_unweighted@0", "train_weighted@0", "evaluate"} <= set(ran_stages(first))
    assert "small_cnn" in json.dumps(json.loads(_config(project / "models/weighted/seed_0/model.keras")))
    assert json.loads(dvc(project, "status", "--json").stdout) == {}  # importing it left nothing DVC sees
    (project / "networks/mine.py").write_text(code.replace("Conv2D(32", "Conv2D(24"))
    # the trainings' dependency changed, and of the stages upstream only frozen_features, which also
    # reads networks/ (a weights file) and, the backbone not frozen, rewrites its same empty archive
    # (evaluate follows the trainings' models)
    assert sorted(json.loads(dvc(project, "status", "--json").stdout)) == ["frozen_features", "train_unweighted@0",
                                                                          "train_weighted@0"]


def _config(path):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read("config.json")


def application_weights(folder, name, seed):
    """A keras.applications model without its top, randomly initialised by seed, its weights saved
    under folder/networks/ as Keras saves them: (the path params take, the weights)."""
    keras.utils.set_random_seed(seed)
    application = getattr(keras.applications, name)(include_top=False, weights=None, input_shape=(32, 32, 3),
                                                     pooling="avg")
    (folder / "networks").mkdir(exist_ok=True)
    application.save_weights(folder / f"networks/{name}.weights.h5")
    return f"networks/{name}.weights.h5", application.get_weights()


def keras_network(**model):
    return shipped_params({"model": {"backbone": "keras:MobileNetV3Small", **model}}).model


def test_a_keras_application_starts_from_a_weights_file_and_refuses_another_architecture(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, saved = application_weights(tmp_path, "MobileNetV3Small", seed=7)
    model = build_model(0.5, "float32", (32, 32, 3), 10, keras_network(weights=path))
    assert [type(layer).__name__ for layer in model.layers][:2] == ["ApplicationPreprocessing", "Functional"]
    loaded = model.layers[1].get_weights()
    assert len(loaded) == len(saved) and all(np.array_equal(a, b) for a, b in zip(loaded, saved))
    random = build_model(0.5, "float32", (32, 32, 3), 10, keras_network()).layers[1].get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(random, saved))  # the file, not a random start
    other, _ = application_weights(tmp_path, "MobileNetV3Large", seed=7)
    with pytest.raises(UserError) as caught:
        build_model(0.5, "float32", (32, 32, 3), 10, keras_network(weights=other))
    assert str(caught.value).startswith(f"model.weights = {other!r}: not weights of "
                                        "keras.applications.MobileNetV3Small") and "\n" not in str(caught.value)


def test_a_frozen_keras_application_trains_the_head_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, saved = application_weights(tmp_path, "MobileNetV3Small", seed=7)
    params = shipped_params({"train": {"epochs": 1, "batch_size": 16}})
    first = FirstWeights()
    model, _ = train_model(colour_splits(), params.train, 0, callbacks=[first],
                           network=keras_network(weights=path, trainable="head"))
    after = model.layers[1].get_weights()  # batch normalisation's statistics included
    assert all(np.array_equal(a, b) for a, b in zip(after, saved, strict=True))
    assert not np.array_equal(model.layers[-1].get_weights()[0], first.layers[-1][0])  # the head learned


def test_a_keras_application_that_does_not_exist_is_one_line_naming_the_close_ones():
    with pytest.raises(UserError) as caught:
        build_model(0.5, "float32", (32, 32), 10,
                    shipped_params({"model": {"backbone": "keras:MobilenetV3Small"}}).model)
    message = str(caught.value)
    assert "keras.applications has no MobilenetV3Small; close: MobileNetV3Small" in message and "\n" not in message


def test_images_smaller_than_the_applications_smallest_input_are_resized_up_to_it_inside_the_model():
    """28 x 28 grey digits into MobileNetV3Small, whose smallest input is 32 x 32: the saved model
    still takes the raw 28 x 28 pixels; the application sees them bilinearly resized (as
    tf.image.resize does) and in three channels; 32 x 32 images pass as they are."""
    import tensorflow as tf

    network = shipped_params({"model": {"backbone": "keras:MobileNetV3Small"}}).model
    model = build_model(0.5, "float32", (28, 28), 10, network)
    assert [type(layer).__name__ for layer in model.layers] == ["ApplicationPreprocessing", "Resizing", "Functional",
                                                                "Dropout", "Dense"]
    assert model.layers[2].input.shape[1:] == (32, 32, 3) and model.inputs[0].shape[1:] == (28, 28)
    digits = image_splits()["x_train"][:4]
    seen = keras.Model(model.inputs, model.layers[1].output).predict(digits, verbose=0)
    expected = tf.image.resize(np.repeat(digits[..., None].astype(np.float32), 3, axis=3), (32, 32)).numpy()
    np.testing.assert_allclose(seen, expected, rtol=1e-5, atol=1e-4)
    assert "Resizing" not in [type(layer).__name__ for layer in build_model(0.5, "float32", (32, 32, 3), 10,
                                                                                network).layers]


def test_imagenet_weights_unreachable_say_where_to_put_the_file(subprocesses):
    """In a process of its own whose proxy nobody listens on: Keras' own download really fails, as
    without a network (urllib keeps its first opener, proxies and all, for the process's life)."""
    import os
    import subprocess
    import sys

    script = """
from classweights.errors import UserError
from classweights.model import build_model
from tools.sandbox import shipped_params
try:
    build_model(0.5, "float32", (32, 32), 10, shipped_params({"model": {"backbone": "keras:MobileNetV3Small",
                                                                         "weights": "imagenet"}}).model)
except UserError as error:
    print(error)
"""
    dead = "http://127.0.0.1:9"
    env = {**{k: v for k, v in os.environ.items() if k.lower() != "no_proxy"},
           "https_proxy": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "HTTP_PROXY": dead}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    message = result.stdout.strip().splitlines()[-1]
    file = "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    assert message.startswith("model.weights = 'imagenet': could not download MobileNetV3Small's weights"), result
    assert message.endswith(f"put that file in ~/.keras/models/{file}"), message


def test_the_report_title_names_the_backbone_unless_it_is_the_default():
    from classweights.report import describe_run

    assert describe_run(shipped_params()).endswith("; balanced class weights applied to the loss; 10 epochs, 10 seeds")
    resnet = shipped_params({"model": {"backbone": "resnet", "resnet_depth": 32}})
    assert describe_run(resnet).endswith("; balanced class weights applied to the loss; ResNet-32, 10 epochs, 10 seeds")
    frozen = shipped_params({"model": {"backbone": "keras:MobileNetV3Small", "weights": "imagenet",
                                       "trainable": "head"}})
    assert ("; keras:MobileNetV3Small (imagenet weights, frozen; images resized to 224 × 224 and preprocessed as it "
            "expects), 10 epochs") in describe_run(frozen)
    inception = shipped_params({"model": {"backbone": "keras:InceptionV3", "weights": "imagenet"}})
    assert "(imagenet weights, fine-tuned; images resized to 299 × 299 and" in describe_run(inception)
    random = shipped_params({"model": {"backbone": "keras:MobileNetV3Small"}})
    assert ("(random initial weights, fine-tuned; images at their size (resized up to its smallest input if "
            "smaller) and preprocessed as it expects)") in describe_run(random)
    table = shipped_params({"data": {"source": "csv", "path": "data/input/t.csv"}, "model": {"backbone": "mlp"}})
    assert describe_run(table).startswith("csv data/input/t.csv, step imbalance") and "; MLP 128, 10 epochs" in \
        describe_run(table)
