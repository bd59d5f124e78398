"""The remedy arm's training losses, as Keras losses on the head's output, and the per-class
constants they need.

Each loss takes integer labels (n,) and the head's output (n, classes: logits; LDAM: cosines, which
it scales) and returns one loss per image, so that Keras can weigh it by a class weight. The
network's probabilities are the softmax of the same logits (LDAM: of scale · cosine), so evaluate
reads probabilities whatever the loss.
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
    return -_focal_factor(1.0 - ops.exp(log_p), gamma) * log_p


def _focal_factor(rest, gamma):
    """(1 − p_y)^gamma with a finite gradient where p_y rounds to 1 (rest = 0, e.g. logits [18, 0, 0]
    in float32). There the power's gradient gamma · 0^(gamma − 1) is infinite for gamma < 1 (0 · inf
    for gamma = 0) and the chain rule turns it into NaN for every logit. The factor's value there is
    its limit 0^gamma (0, or 1 at gamma = 0), taken as a constant: the exact gradient of the factor's
    term, gamma · rest^(gamma − 1) · p_y · log p_y, goes to 0 with rest. The power is taken of a base
    that is 1 where rest is 0, so that neither branch of the `where` has a NaN gradient."""
    positive = rest > 0
    return ops.where(positive, ops.power(ops.where(positive, rest, 1.0), gamma), 0.0 ** gamma)


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


# The Keras losses (y_true, head output) -> per-image loss of the remedy losses, from a loss params
# section and the training images per class (classweights.remedy.LOSSES names which builds which).

def make_focal_loss(loss, counts):
    return lambda y_true, y_pred: focal_loss(y_true, y_pred, loss.focal_gamma)


def make_ldam_loss(loss, counts):
    margins = ldam_margins(counts, loss.ldam_max_margin)
    return lambda y_true, y_pred: ldam_loss(y_true, y_pred, margins, loss.ldam_scale)


def make_logit_adjusted_loss(loss, counts):
    prior = log_prior(counts)
    return lambda y_true, y_pred: logit_adjusted_loss(y_true, y_pred, prior, loss.la_tau)
