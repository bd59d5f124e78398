"""model.trainable head: the frozen backbone's features, computed once per data and backbone
(stages/frozen_features.py), and the saved model put back together from that backbone and the
head an (arm, seed) trained on them, so that it takes raw inputs like any other. Imports TensorFlow."""
import numpy as np

from classweights.model import keras, tf, use_threads  # first: it quiets TensorFlow's start-up
from classweights.backbones import PRECOMPUTED, backbone_layers, input_dtype  # noqa: I001

SPLITS = ("train", "val", "test")
PREDICT_BATCH = 256  # images a batch through the frozen backbone: memory only, one pass per split


def frozen_backbone(network, input_shape, precision):
    """The backbone alone, raw input to feature vector, as build_model builds it (model.trainable
    head: frozen, drawn from backbones.FROZEN_SEED when its weights are random)."""
    hidden = keras.mixed_precision.Policy(precision)
    return keras.Sequential([keras.Input(shape=tuple(input_shape), dtype=input_dtype(input_shape)),
                             *backbone_layers(network, input_shape, 0.0, hidden)])


def compute_features(splits, network, train):
    """{split: the frozen backbone's float32 features (n, F)} for x_train, x_val and x_test, in
    inference mode (batch normalisation with its own statistics), on train.threads threads."""
    use_threads(train.threads)
    keras.backend.clear_session(free_memory=False)
    tf.config.experimental.enable_op_determinism()
    backbone = frozen_backbone(network, splits["x_train"].shape[1:], train.precision)
    return {split: np.asarray(backbone.predict(splits[f"x_{split}"], batch_size=PREDICT_BATCH, verbose=0),
                              dtype=np.float32) for split in SPLITS}


def head_splits(splits, features):
    """splits with every x_<split> replaced by its features: what a head trains and predicts on."""
    return {**splits, **{f"x_{split}": features[split] for split in SPLITS}}


def head_network(network):
    """The model params of a head on precomputed features: no backbone layers (backbones.PRECOMPUTED)."""
    return network.model_copy(update={"backbone": PRECOMPUTED})


def with_backbone(head, network, input_shape, precision):
    """The saved model: the frozen backbone (built again: the same weights, by FROZEN_SEED or its
    file) followed by the trained head's layers, so that it takes raw inputs and its last two layers
    are the head's dropout and dense layer, as evaluate's head_inputs expects of every model."""
    backbone = frozen_backbone(network, input_shape, precision)
    return keras.Sequential([keras.Input(shape=tuple(input_shape), dtype=input_dtype(input_shape)),
                             *backbone.layers, *head.layers])

