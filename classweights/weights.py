"""Class weights from training counts, normalised so the mean weight over training samples is 1."""
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

# Unnormalised weight per class from (labels, classes, counts, beta); params.py lists the same names.
STRATEGIES = {
    # N / (K * n_c): scikit-learn's compute_class_weight, the notebook's choice
    "balanced": lambda labels, classes, counts, beta: compute_class_weight("balanced", classes=classes, y=labels),
    "sqrt_inverse": lambda labels, classes, counts, beta: 1.0 / np.sqrt(counts),
    # (1 - beta) / (1 - beta^n_c): Cui et al. 2019
    "effective_number": lambda labels, classes, counts, beta: (1.0 - beta) / (1.0 - np.power(beta, counts)),
}


def class_weights(labels, strategy, beta):
    """{class id: weight} for the classes present in labels, by one of STRATEGIES."""
    classes, counts = np.unique(labels, return_counts=True)
    raw = STRATEGIES[strategy](labels, classes, counts, beta)
    normalised = raw * counts.sum() / np.dot(raw, counts)
    return {int(c): float(w) for c, w in zip(classes, normalised)}
