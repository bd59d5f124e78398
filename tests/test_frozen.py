"""model.trainable head: the frozen backbone's features computed once (stages/frozen_features.py),
every (arm, seed) training a head on them, and the saved model put back together so that it takes
raw images. Real MobileNetV3Small at 32 x 32 from a weights file, tiny data, in this process."""
import keras
import numpy as np
import pytest

from classweights.frozen import compute_features, head_network, head_splits, head_training, with_backbone
from classweights.model import head_inputs, load_model, train_arm, train_model
from classweights.remedy import Remedy
from tests.test_backbones import ARMS, WEIGHTS, FirstWeights, application_weights, colour_splits, keras_network
from tools.sandbox import shipped_params

TRAIN = shipped_params({"train": {"epochs": 2, "batch_size": 16}}).train


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """(splits with a test split, the frozen network's params, its features, the weights file's weights)."""
    folder = tmp_path_factory.mktemp("frozen")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        path, saved = application_weights(folder, "MobileNetV3Small", seed=7)
        splits = colour_splits()
        splits["x_test"], splits["y_test"] = splits["x_val"][::-1].copy(), splits["y_val"][::-1].copy()
        network = keras_network(weights=path, trainable="head")
        yield splits, network, compute_features(splits, network, TRAIN), saved


def test_the_features_are_the_applications_own_output(frozen):
    """Against keras.applications built here with the file's weights, and against what the head of
    the network a training builds receives: the same vectors."""
    splits, network, features, saved = frozen
    application = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3),
                                                      pooling="avg")
    application.set_weights(saved)
    for split in ("train", "val", "test"):
        x = splits[f"x_{split}"]
        np.testing.assert_allclose(features[split], application.predict(x.astype(np.float32), verbose=0),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(features[split], head_inputs(_inline(splits, network, epochs=0), x)[0])
    assert features["train"].shape == (len(splits["y_train"]), 576) and features["train"].dtype == np.float32


def _inline(splits, network, epochs):
    """The network a training builds with the frozen backbone in it, trained `epochs` epochs."""
    if not epochs:
        from classweights.model import build_model

        return build_model(TRAIN.dropout, TRAIN.precision, splits["x_train"].shape[1:], 10, network)
    return train_model(splits, TRAIN.model_copy(update={"epochs": epochs}), 0, network=network)[0]


@pytest.mark.parametrize("arm", ["unweighted", "ldam"])
def test_a_head_trained_on_the_features_is_the_one_trained_with_the_backbone_in_every_epoch(frozen, arm):
    """Same initial head, dropout masks, batches and features: the same trained head, weight for
    weight, and the same history; put back on the backbone it predicts on raw images as the head
    alone does on the features."""
    splits, network, features, _ = frozen
    remedy = Remedy.unweighted() if arm == "unweighted" else Remedy.of(shipped_params({"loss": {"name": arm}}))
    weights = None if arm == "unweighted" else WEIGHTS
    inline, inline_history = train_model(splits, TRAIN, 0, weights, remedy, network=network)
    head, head_history = train_model(head_splits(splits, features), TRAIN, 0, weights, remedy,
                                     network=head_network(network))
    trained = [layer for layer in head.layers if layer.weights]
    assert [w.shape for layer in trained for w in layer.get_weights()] == \
        [w.shape for layer in inline.layers[-len(head.layers):] if layer.weights for w in layer.get_weights()]
    for ours, theirs in zip(trained, [layer for layer in inline.layers[-len(head.layers):] if layer.weights]):
        for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    assert head_history == inline_history
    whole = with_backbone(head, network, splits["x_train"].shape[1:], TRAIN.precision)
    np.testing.assert_allclose(whole.predict(splits["x_test"], verbose=0),
                               head.predict(features["test"], verbose=0), rtol=1e-5, atol=1e-6)


def test_every_arm_starts_from_the_head_the_backbone_in_every_epoch_would_start_from(frozen):
    splits, network, features, _ = frozen
    one_epoch = TRAIN.model_copy(update={"epochs": 1})

    def head_start(arm, inputs, net):
        loss, apply = ARMS.get(arm, ({"name": "cross_entropy"}, "loss"))
        first = FirstWeights()
        remedy = (Remedy.unweighted() if arm == "unweighted"
                  else Remedy.of(shipped_params({"loss": loss, "weights": {"apply": apply}})))
        train_model(inputs, one_epoch, 3, None if arm == "unweighted" or apply == "none" else WEIGHTS, remedy,
                    callbacks=[first], network=net)
        return first.layers[-1]

    inline = head_start("unweighted", splits, network)
    for arm in ["unweighted", *ARMS]:
        start = head_start(arm, head_splits(splits, features), head_network(network))
        expected = inline[:1] if arm == "ldam" else inline  # LDAM's cosine head: the kernel alone
        assert len(start) == len(expected) and all(np.array_equal(a, b) for a, b in zip(start, expected)), arm


def test_the_saved_model_takes_raw_images_and_gives_the_saved_probabilities(frozen, tmp_path):
    """What evaluate needs of it: safe-mode loading, the test probabilities from raw images, and
    the head's input and kernel (head_inputs) for the decoupled arms."""
    splits, network, features, _ = frozen
    shape = splits["x_train"].shape[1:]
    inputs, head_params, saved = head_training(splits, features, network, TRAIN.precision)  # as stages/train.py
    train_arm(inputs, TRAIN, 0, tmp_path / "arm", network=head_params, saved=saved)
    model = load_model(tmp_path / "arm/model.keras")
    assert model.inputs[0].shape[1:] == shape and model.inputs[0].dtype == "uint8"
    proba = np.load(tmp_path / "arm/test_proba.npz")["proba"]
    np.testing.assert_allclose(model.predict(splits["x_test"], verbose=0), proba, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head_inputs(model, splits["x_test"])[0], features["test"], rtol=1e-5, atol=1e-6)


def test_fine_tuned_the_stage_reads_nothing_and_writes_the_same_empty_archive(tmp_path, monkeypatch):
    """model.trainable all (the default): no data read (there is none here), no features, and the
    same bytes at every run, so the trainings that depend on the file never see it change."""
    import sys

    import yaml

    from stages import frozen_features
    from tools.sandbox import committed_params

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(committed_params()))
    monkeypatch.chdir(tmp_path)
    written = []
    for _ in range(2):
        frozen_features.main()
        written.append((tmp_path / "data/frozen_features.npz").read_bytes())
    assert written[0] == written[1] and not (tmp_path / "data/splits.npz").exists()
    with np.load(tmp_path / "data/frozen_features.npz") as archive:
        assert archive.files == []
    lazy = "classweights.frozen"  # TensorFlow comes with it; the stage imports it only when frozen
    assert lazy in sys.modules and lazy not in vars(frozen_features)


def test_dvc_repro_computes_the_features_once_and_a_remedy_edit_keeps_them(subprocesses, tmp_path):
    import json

    from tools.sandbox import ONE_SEED, commit, dvc, make_project, ran_stages, set_params

    project = make_project(tmp_path / "project", {
        **ONE_SEED, "data": {"image_size": [32, 32]},  # MobileNetV3Small's smallest input
        "model": {"backbone": "keras:MobileNetV3Small", "weights": "networks/MobileNetV3Small.weights.h5",
                  "trainable": "head"}})
    application_weights(project, "MobileNetV3Small", seed=7)
    commit(project, "a weights file")
    first = dvc(project, "repro")
    assert {"frozen_features", "train_unweighted@0", "train_weighted@0", "evaluate"} <= set(ran_stages(first))
    with np.load(project / "data/frozen_features.npz") as archive, np.load(project / "data/splits.npz") as splits:
        assert {name: archive[name].shape for name in archive.files} == \
            {split: (len(splits[f"y_{split}"]), 576) for split in ("train", "val", "test")}
    metrics = json.loads((project / "metrics/unweighted.json").read_text())
    assert 0 <= metrics["mean"]["balanced_accuracy"] <= 1
    set_params(project, {"weights": {"strategy": "sqrt_inverse"}})
    assert ran_stages(dvc(project, "repro")) == ["check_params", "compute_weights", "evaluate", "train_weighted@0"]
