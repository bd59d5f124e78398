"""The remedy arm's training losses, as Keras losses on logits, and the per-class constants they need.

Each loss takes integer labels (n,) and logits (n, classes) and returns one loss per image,
so that Keras can weigh it by a class weight. The network's probabilities are the softmax of
the same logits (LDAM: of scale · cosine), so evaluate reads probabilities whatever the loss.
"""
import numpy as np
from keras import ops


def training_counts(labels, num_classes):
    """Images per class in the training labels, in class order."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)


def ldam_margins(counts, max_margin):
    """LDAM's per-class margins (Cao et al. 2019): C / n_j^(1/4), with C chosen so that the
    largest margin (the rarest class's) is max_margin."""
    raw = 1.0 / np.power(np.asarray(counts, dtype=np.float64), 0.25)
    return raw * (max_margin / raw.max())


def log_prior(counts):
    """log pi_j: the log of each class's share of the training images."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.log(counts / counts.sum())


def _labels(labels):
    return ops.cast(ops.reshape(labels, (-1,)), "int32")


def cross_entropy(labels, logits):
    """−log softmax(logits)_y per image."""
    return ops.sparse_categorical_crossentropy(_labels(labels), logits, from_logits=True)


def focal_loss(labels, logits, gamma):
    """Focal loss (Lin et al. 2017) without the alpha factor: −(1 − p_y)^gamma · log p_y."""
    log_p = ops.take_along_axis(ops.log_softmax(logits, axis=-1), ops.expand_dims(_labels(labels), -1), axis=-1)
    log_p = ops.squeeze(log_p, -1)
    return -ops.power(1.0 - ops.exp(log_p), gamma) * log_p


def ldam_loss(labels, cosine, margins, scale):
    """LDAM (Cao et al. 2019): the true class's cosine lowered by its class's margin, then
    cross-entropy of scale · cosine."""
    labels = _labels(labels)
    margin = ops.one_hot(labels, ops.shape(cosine)[-1]) * ops.take(ops.convert_to_tensor(margins, cosine.dtype),
                                                                      labels)[:, None]
    return cross_entropy(labels, scale * (cosine - margin))


def logit_adjusted_loss(labels, logits, log_prior_, tau):
    """The logit-adjusted loss (Menon et al. 2021): cross-entropy of logits + tau · log pi.
    At tau = 1 it is Balanced Softmax (Ren et al. 2020)."""
    return cross_entropy(labels, logits + tau * ops.convert_to_tensor(log_prior_, logits.dtype))


def remedy_loss(loss, counts):
    """The Keras loss (y_true, logits) -> per-image loss for a loss params section, given the
    training counts per class; None for cross-entropy, which keeps Keras' own loss."""
    if loss.name == "focal":
        return lambda y_true, y_pred: focal_loss(y_true, y_pred, loss.focal_gamma)
    if loss.name == "ldam":
        margins = ldam_margins(counts, loss.ldam_max_margin)
        return lambda y_true, y_pred: ldam_loss(y_true, y_pred, margins, loss.ldam_scale)
    if loss.name == "logit_adjusted":
        prior = log_prior(counts)
        return lambda y_true, y_pred: logit_adjusted_loss(y_true, y_pred, prior, loss.la_tau)
    return None
