"""Class weights from training counts, normalised so the mean weight over training samples is 1."""
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from classweights.cli import UserError


def class_weights(labels, strategy, beta=0.999):
    """{class id: weight} for the classes present in labels.

    - balanced: N / (K * n_c), scikit-learn's compute_class_weight (the notebook's choice).
    - sqrt_inverse: proportional to 1 / sqrt(n_c).
    - effective_number: proportional to (1 - beta) / (1 - beta^n_c) (Cui et al. 2019).
    """
    classes, counts = np.unique(labels, return_counts=True)
    if strategy == "balanced":
        raw = compute_class_weight("balanced", classes=classes, y=labels)
    elif strategy == "sqrt_inverse":
        raw = 1.0 / np.sqrt(counts)
    elif strategy == "effective_number":
        raw = (1.0 - beta) / (1.0 - np.power(beta, counts))
    else:
        raise UserError(f"weights.strategy = {strategy!r}: allowed: balanced, sqrt_inverse, effective_number")
    normalised = raw * counts.sum() / np.dot(raw, counts)
    return {int(c): float(w) for c, w in zip(classes, normalised)}


def weights_from_json(data):
    """JSON keys are strings; Keras looks weights up by int(label) and silently uses 1.0 for a
    missing key, so convert every key back to int here."""
    return {int(c): float(w) for c, w in data.items()}
