"""Test-set metrics of one model, and their mean and spread over seeds."""
import numpy as np
from scipy.special import softmax
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, log_loss,
                             precision_recall_fscore_support)

from classweights.params import NUM_CLASSES
from classweights.paths import ARMS

CLASSES = list(range(NUM_CLASSES))
UNWEIGHTED, WEIGHTED = ARMS  # the trained arms
LOGIT_ADJUSTED = "logit_adjusted"  # an arm evaluate derives from the unweighted arm: no training
# The paired comparisons, (arm, baseline): each difference is arm − baseline on the same seed.
# Comparisons with an arm that is off (logit adjustment at tau 0) are left out.
COMPARISONS = ((WEIGHTED, UNWEIGHTED), (LOGIT_ADJUSTED, UNWEIGHTED), (WEIGHTED, LOGIT_ADJUSTED))
PROBABILITY_FLOOR = 1e-12  # clip before a log: a zero probability or prior stays finite
# The few numbers `dvc metrics show` lists per arm; every other metric is in metrics/details/.
HEADLINE_METRICS = ("accuracy", "loss", "balanced_accuracy", "macro_f1", "minority_recall")
# The ones compared between arms (test loss is a training criterion, not a question users ask).
COMPARED_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "minority_recall")


def seed_metrics(y_true, proba, minority):
    """Accuracy, loss, balanced accuracy, macro-F1, minority recall and per-class P/R/F1."""
    y_pred = proba.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=CLASSES, zero_division=0)
    metrics = {
        "accuracy": accuracy_score(y_true, y_pred),
        "loss": log_loss(y_true, proba, labels=CLASSES),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        "macro_f1": np.mean(f1),  # the unweighted mean of the per-class F1 above
    }
    if minority:
        metrics["minority_recall"] = float(np.mean(recall[minority]))
    metrics["per_class"] = {str(c): {"precision": precision[c], "recall": recall[c], "f1": f1[c]} for c in CLASSES}
    return _to_floats(metrics)


def training_prior(train_counts):
    """pi: each class's share of the training images, in class order."""
    counts = np.array([train_counts[str(c)] for c in CLASSES])
    return counts / counts.sum()


def logit_adjusted_proba(proba, prior, tau):
    """Post-hoc logit adjustment (Menon et al. 2021): softmax(log p − tau · log pi), row by row.

    Its argmax is argmax_y (log p_y − tau · log pi_y), the adjusted prediction; the renormalised
    probabilities are what its log loss is computed from. tau = 0 leaves the ranking unchanged.
    """
    log_p = np.log(np.clip(np.asarray(proba, dtype=np.float64), PROBABILITY_FLOOR, None))  # models give float32
    log_prior = np.log(np.clip(prior, PROBABILITY_FLOOR, None))
    return softmax(log_p - tau * log_prior, axis=1)


def arm_probabilities(trained, train_counts, tau):
    """Every arm's test probabilities per seed: the trained arms' as read, plus the
    logit-adjusted arm from the unweighted arm's (same seeds) unless tau is 0."""
    arms = dict(trained)
    if tau > 0:
        prior = training_prior(train_counts)
        arms[LOGIT_ADJUSTED] = {seed: logit_adjusted_proba(p, prior, tau) for seed, p in trained[UNWEIGHTED].items()}
    return arms


def comparison_name(arm, baseline):
    """How metrics/comparison.json names a comparison: 'weighted_vs_unweighted'."""
    return f"{arm}_vs_{baseline}"


def comparison_pairs(arms):
    """The (arm, baseline) pairs of COMPARISONS whose arms are both present."""
    return [(arm, baseline) for arm, baseline in COMPARISONS if arm in arms and baseline in arms]


def _to_floats(tree):
    if isinstance(tree, dict):
        return {key: _to_floats(value) for key, value in tree.items()}
    return float(tree)


def flatten(tree, prefix=""):
    """{'per_class': {'3': {'recall': x}}} -> {'per_class.3.recall': x}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def unflatten(flat):
    tree = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def summarise_seeds(per_seed):
    """{'mean': ..., 'std': ..., 'seeds': per_seed}; std is the sample sd (0 with one seed)."""
    flat = [flatten(metrics) for metrics in per_seed.values()]
    keys = flat[0].keys()
    values = {key: np.array([f[key] for f in flat]) for key in keys}
    ddof = 1 if len(flat) > 1 else 0
    return {
        "mean": unflatten({key: float(v.mean()) for key, v in values.items()}),
        "std": unflatten({key: float(v.std(ddof=ddof)) for key, v in values.items()}),
        "seeds": per_seed,
    }


def confusion(y_true, y_pred):
    return confusion_matrix(y_true, y_pred, labels=CLASSES)


def headline_metrics(summary):
    """The few numbers `dvc metrics show` lists per arm: mean and sd of the headline metrics.
    Everything else (per class, per seed) is in the details file."""
    mean, std = summary["mean"], summary["std"]
    keys = [k for k in HEADLINE_METRICS if k in mean]
    return {"mean": {k: mean[k] for k in keys}, "sd": {k: std[k] for k in keys}}
