"""model.trainable head: the frozen backbone's features, computed once per data and backbone
(stages/frozen_features.py), and the saved model put back together from that backbone and the
head an (arm, seed) trained on them, so that it takes raw inputs like any other. Imports TensorFlow."""
import numpy as np

from classweights.model import keras, tf, use_threads  # first: it quiets TensorFlow's start-up
from classweights.backbones import PRECOMPUTED, backbone_layers, input_dtype  # noqa: I001

PARTS = ("train", "val", "test")  # the splits whose features are computed
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
                              dtype=np.float32) for split in PARTS}


def head_splits(splits, features):
    """splits with every x_<split> replaced by its features: what a head trains and predicts on."""
    return {**splits, **{f"x_{split}": features[split] for split in PARTS}}


def head_network(network):
    """The model params of a head on precomputed features: no backbone layers (backbones.PRECOMPUTED)."""
    return network.model_copy(update={"backbone": PRECOMPUTED})


def with_backbone(head, network, input_shape, precision):
    """The saved model: the frozen backbone (built again: the same weights, by FROZEN_SEED or its
    file) followed by the trained head's layers, so that it takes raw inputs; the unweighted arm's
    (the softmax head) ends in its dropout and dense layer, as evaluate's head_inputs expects."""
    backbone = frozen_backbone(network, input_shape, precision)
    return keras.Sequential([keras.Input(shape=tuple(input_shape), dtype=input_dtype(input_shape)),
                             *backbone.layers, *head.layers])


def head_training(splits, features, network, precision):
    """What a training of the head alone takes: (splits with the features for inputs, the head's
    model params, a function from the trained head to the model saved: the backbone put back)."""
    raw_shape = splits["x_train"].shape[1:]
    return (head_splits(splits, features), head_network(network),
            lambda head: with_backbone(head, network, raw_shape, precision))
