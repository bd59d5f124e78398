"""Class weights from training counts, normalised so the mean weight over training samples is 1."""
import numpy as np

# Unnormalised weight per class from (labels, classes, counts, beta); params.py lists the same names.
STRATEGIES = {
    # N / (K * n_c): scikit-learn's compute_class_weight("balanced"), the notebook's choice, in its
    # arithmetic (tests/test_weights.py compares the two); importing scikit-learn cost the stage ~2 s
    "balanced": lambda labels, classes, counts, beta: counts.sum() / (len(classes) * counts),
    "sqrt_inverse": lambda labels, classes, counts, beta: 1.0 / np.sqrt(counts),
    # (1 - beta) / (1 - beta^n_c): Cui et al. 2019
    "effective_number": lambda labels, classes, counts, beta: (1.0 - beta) / (1.0 - np.power(beta, counts)),
}


def class_weights(labels, strategy, beta):
    """{class id: weight} for the classes present in labels, by one of STRATEGIES."""
    classes, counts = np.unique(labels, return_counts=True)
    raw = STRATEGIES[strategy](labels, classes, counts, beta)
    # Scaled to a largest weight of 1 first, so equal counts give weights of exactly 1 (not 1 ± 1 ulp)
    # for every strategy: their weights files are then one file and their trainings one run.
    relative = raw / raw.max()
    normalised = relative * counts.sum() / np.dot(relative, counts)
    return {int(c): float(w) for c, w in zip(classes, normalised)}
