"""Test-set metrics of one model, and their mean and spread over seeds."""
import numpy as np
from scipy.special import softmax
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score, brier_score_loss,
                             confusion_matrix, log_loss, precision_recall_fscore_support)

from classweights.params import TUNED
from classweights.paths import ARMS

UNWEIGHTED, WEIGHTED = ARMS  # the trained arms, as named in models/<arm>/
LOGIT_ADJUSTED = "logit_adjusted"  # an arm evaluate derives from the unweighted arm: no training
TAU_NORMALISED = "tau_normalised"  # the unweighted model's classifier τ-normalised (Kang et al. 2020): no training
CRT = "crt"  # the unweighted model's classifier re-trained on class-balanced batches, backbone frozen (Kang et al.)
# The paired comparisons, (arm, baseline): each difference is arm − baseline on the same seed.
# Comparisons with an arm that is off (logit adjustment at tau 0, τ-normalisation null, cRT 0 epochs) are left out.
COMPARISONS = ((WEIGHTED, UNWEIGHTED), (LOGIT_ADJUSTED, UNWEIGHTED), (WEIGHTED, LOGIT_ADJUSTED),
               (TAU_NORMALISED, UNWEIGHTED), (CRT, UNWEIGHTED))
PROBABILITY_FLOOR = 1e-12  # clip before a log: a zero probability or prior stays finite
# What a remedy costs besides recall: false alarms (the minority classes' precision), ranking
# (macro PR-AUC) and calibration (ECE, NLL, Brier); "loss" is the test NLL (docs/statistics.md).
COST_METRICS = ("minority_precision", "macro_pr_auc", "ece", "loss", "brier")
# The few numbers `dvc metrics show` lists per arm; every other metric is in metrics/details/.
TEST_METRICS = ("accuracy", "loss", "balanced_accuracy", "macro_f1", "minority_recall",
                *(m for m in COST_METRICS if m != "loss"))
# The trained arms only: how far a model fits its own training split (training_fit).
TRAIN_FIT_METRICS = ("train_accuracy", "train_minority_recall")
HEADLINE_METRICS = (*TEST_METRICS, *TRAIN_FIT_METRICS)
# The ones compared between arms: the gains, then the costs.
COMPARED_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "minority_recall", *COST_METRICS)
# Smaller is better for these: a verdict calls a negative difference "better".
LOWER_IS_BETTER = ("loss", "ece", "brier")
CALIBRATION_BINS = 15  # ECE and the reliability diagram: equal-width bins of the top-class confidence


def seed_metrics(y_true, proba, minority, class_names=None):
    """Accuracy, loss (NLL), balanced accuracy, macro-F1, minority recall and precision, macro
    PR-AUC, ECE, Brier score and per-class P/R/F1.

    proba has one column per class; minority lists class indices; per-class results are keyed
    by class name (class_names, in index order; default the indices as strings)."""
    classes = list(range(proba.shape[1]))
    names = class_names or [str(c) for c in classes]
    y_pred = proba.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    metrics = {
        "accuracy": accuracy_score(y_true, y_pred),
        "loss": log_loss(y_true, proba, labels=classes),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        "macro_f1": np.mean(f1),  # the unweighted mean of the per-class F1 above
    }
    if minority:
        metrics["minority_recall"] = float(np.mean(recall[minority]))
        metrics["minority_precision"] = float(np.mean(precision[minority]))
    metrics["macro_pr_auc"] = macro_average_precision(y_true, proba)
    metrics["ece"] = expected_calibration_error(y_true, proba)
    # Brier (1950) for K classes: mean over images of sum_k (p_k − [y = k])², in [0, 2]; never halved,
    # so that two classes give the same definition as ten
    # (in float64, each row summing to 1 at float64's precision: a float32 softmax sums to 1 only within
    # ~1e-7, and scikit-learn warns at every such row)
    proba64 = np.asarray(proba, dtype=np.float64)
    metrics["brier"] = brier_score_loss(y_true, proba64 / proba64.sum(axis=1, keepdims=True), labels=classes,
                                        scale_by_half=False)
    metrics["per_class"] = {names[c]: {"precision": precision[c], "recall": recall[c], "f1": f1[c]} for c in classes}
    return _to_floats(metrics)


def macro_average_precision(y_true, proba):
    """Macro PR-AUC, threshold-free: each class's average precision one-vs-rest (its images
    positive, ranked by its probability), averaged over the classes the test set holds (a class
    with no test image has no precision-recall curve)."""
    present = np.unique(y_true)
    return float(np.mean([average_precision_score(y_true == c, proba[:, c]) for c in present]))


def top_class_confidence(proba):
    """(confidence, predicted class): the largest probability of each row and its class."""
    proba = np.asarray(proba, dtype=np.float64)
    return proba.max(axis=1), proba.argmax(axis=1)


def calibration_bins(y_true, proba, bins=CALIBRATION_BINS):
    """Images per bin, their mean top-class confidence and their accuracy (NaN in an empty bin),
    over `bins` equal-width bins of the top-class confidence, each open on the left and closed
    on the right: ((m − 1)/bins, m/bins] (Guo et al. 2017)."""
    confidence, predicted = top_class_confidence(proba)
    index = np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1], right=True)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):  # an empty bin: 0 / 0, its mean is NaN
        mean_confidence = np.bincount(index, confidence, minlength=bins) / count
        accuracy = np.bincount(index, predicted == np.asarray(y_true), minlength=bins) / count
    return count, mean_confidence, accuracy


def pooled_calibration_bins(y_true, proba_by_seed):
    """calibration_bins over every seed's test images together (the reliability diagram's)."""
    return calibration_bins(np.tile(y_true, len(proba_by_seed)), np.concatenate(list(proba_by_seed.values())))


def expected_calibration_error(y_true, proba, bins=CALIBRATION_BINS):
    """ECE: sum over the calibration bins of (images in it / all images) · |accuracy − mean
    confidence|, on the top-class confidence (calibration_bins)."""
    count, confidence, accuracy = calibration_bins(y_true, proba, bins)
    full = count > 0
    return float(np.sum(count[full] / count.sum() * np.abs(accuracy[full] - confidence[full])))


def in_class_order(class_counts):
    """data/class_counts.json with every per-class count in class index order (the file's keys are
    names, sorted alphabetically on disk)."""
    names = class_counts["class_names"]
    return {key: {name: value[name] for name in names} if isinstance(value, dict) else value
            for key, value in class_counts.items()}


def training_prior(train_counts):
    """pi: each class's share of the training images, in the counts' order (class index order)."""
    counts = np.array(list(train_counts.values()))
    return counts / counts.sum()


def logit_adjusted_proba(proba, prior, tau):
    """Post-hoc logit adjustment (Menon et al. 2021): softmax(log p − tau · log pi), row by row.

    Its argmax is argmax_y (log p_y − tau · log pi_y), the adjusted prediction; the renormalised
    probabilities are what its log loss is computed from. tau = 0 leaves the ranking unchanged.
    """
    log_p = np.log(np.clip(np.asarray(proba, dtype=np.float64), PROBABILITY_FLOOR, None))  # models give float32
    log_prior = np.log(np.clip(prior, PROBABILITY_FLOOR, None))
    return softmax(log_p - tau * log_prior, axis=1)


# Balanced accuracies this close are a tie (the same recalls summed in another order may differ in the last bit).
TIE_TOLERANCE = 1e-12


def best_on_validation(y_val, predict, grid):
    """The value of grid whose validation predictions predict(value) (class ids, from the validation
    split, never the test split) have the highest balanced accuracy on y_val; a tie goes to the smaller."""
    scores = {value: balanced_accuracy_score(y_val, predict(value)) for value in sorted(set(grid))}
    best = max(scores.values())
    return next(value for value, score in scores.items() if score >= best - TIE_TOLERANCE)


def tune_tau(y_val, val_proba, prior, grid):
    """The τ of grid whose logit adjustment of val_proba (the validation split's probabilities)
    has the highest balanced accuracy on y_val (best_on_validation)."""
    return best_on_validation(y_val, lambda tau: logit_adjusted_proba(val_proba, prior, tau).argmax(axis=1), grid)


def tuned_taus(y_val, val_proba_by_seed, train_counts, grid):
    """{seed: tune_tau} from each seed's unweighted model's validation probabilities."""
    prior = training_prior(train_counts)
    return {seed: tune_tau(y_val, proba, prior, grid) for seed, proba in val_proba_by_seed.items()}


def tau_normalised_kernel(kernel, tau):
    """Kang et al. 2020's τ-normalisation: each class's weight vector w_k (a column of the head's
    (features, K) kernel) divided by ||w_k||^τ. τ = 0 leaves it as it is, τ = 1 gives unit columns."""
    kernel = np.asarray(kernel, dtype=np.float64)
    return kernel / np.maximum(np.linalg.norm(kernel, axis=0), PROBABILITY_FLOOR) ** tau


def tau_normalised_logits(features, kernel, tau):
    """features · the τ-normalised kernel: the classifier's scores without its bias, as Kang et al.'s
    code computes them (the bias is dropped, not normalised)."""
    return np.asarray(features, dtype=np.float64) @ tau_normalised_kernel(kernel, tau)


def tau_normalised_proba(features, kernel, tau):
    """The τ-normalised classifier's probabilities: the softmax of tau_normalised_logits."""
    return softmax(tau_normalised_logits(features, kernel, tau), axis=1)


def tune_tau_norm(y_val, val_features, kernel, grid):
    """The τ of grid whose τ-normalised classifier has the highest validation balanced accuracy."""
    return best_on_validation(y_val, lambda tau: tau_normalised_logits(val_features, kernel, tau).argmax(axis=1),
                              grid)


def tau_normalised_arm(heads, tau, y_val=None, grid=None):
    """(the τ-normalised arm's test probabilities per seed, the τ used per seed or None).
    heads: {seed: {"kernel", "test", "val"}}: the unweighted model's head kernel and the features
    its backbone gives for the test (and validation) split. tau: one number for every seed, or
    TUNED: each seed's own, chosen on the validation split over grid (tune_tau_norm)."""
    taus = ({seed: tune_tau_norm(y_val, head["val"], head["kernel"], grid) for seed, head in heads.items()}
            if tau == TUNED else None)
    proba = {seed: tau_normalised_proba(head["test"], head["kernel"], taus[seed] if taus else tau)
             for seed, head in heads.items()}
    return proba, taus


def linear_proba(features, kernel, bias):
    """softmax(features · kernel + bias): a Dense softmax head's probabilities (cRT's re-trained one)."""
    return softmax(np.asarray(features, dtype=np.float64) @ kernel + bias, axis=1)


def describe_tau(tau):
    """The logit-adjusted arm's τ in labels: 'τ = 1' or 'τ tuned on validation'."""
    return "τ tuned on validation" if tau == TUNED else f"τ = {tau:g}"


def arm_probabilities(trained, train_counts, tau):
    """Every arm's test probabilities per seed: the trained arms' as read, plus the
    logit-adjusted arm from the unweighted arm's (same seeds). tau: one number for every seed
    (0 turns the arm off) or {seed: tau} (tuned_taus)."""
    arms = dict(trained)
    per_seed = isinstance(tau, dict)
    if per_seed or tau > 0:
        prior = training_prior(train_counts)
        arms[LOGIT_ADJUSTED] = {seed: logit_adjusted_proba(p, prior, tau[seed] if per_seed else tau)
                                for seed, p in trained[UNWEIGHTED].items()}
    return arms


def decoupled_labels(evaluate):
    """The labels of Kang et al. 2020's arms that are switched on (evaluate.tau_norm, evaluate.crt_epochs)."""
    labels = {}
    if evaluate.tau_norm is not None:
        labels[TAU_NORMALISED] = f"τ-normalised classifier ({describe_tau(evaluate.tau_norm)})"
    if evaluate.crt_epochs:
        epochs = evaluate.crt_epochs
        labels[CRT] = f"cRT (classifier re-trained class-balanced, {epochs} epoch{'s' if epochs > 1 else ''})"
    return labels


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


def over_seeds(trees, reduce):
    """One tree of the same shape as each of trees, every leaf reduce(array of that leaf's values).
    Walks the nesting rather than joining keys, so a class name may hold any character."""
    if isinstance(trees[0], dict):
        return {key: over_seeds([tree[key] for tree in trees], reduce) for key in trees[0]}
    return float(reduce(np.array(trees)))


def training_fit(y_train, predicted, minority):
    """How far a trained model fits its own training split (its predictions there in inference
    mode, dropout off): accuracy, and the minority classes' mean recall (minority: class indices).
    The weights' effect should fade as this reaches 1, if a network that separates its training
    data ends near the same solution whatever the weights (Byrd & Lipton 2019)."""
    recall = [np.mean(predicted[y_train == c] == c) for c in minority]
    return {"train_accuracy": float(np.mean(predicted == y_train)),
            **({"train_minority_recall": float(np.mean(recall))} if minority else {})}


def summarise_seeds(per_seed):
    """{'mean': ..., 'std': ..., 'seeds': per_seed}; std is the sample sd (0 with one seed)."""
    trees = list(per_seed.values())
    ddof = 1 if len(trees) > 1 else 0
    return {
        "mean": over_seeds(trees, np.mean),
        "std": over_seeds(trees, lambda values: values.std(ddof=ddof)),
        "seeds": per_seed,
    }


def confusion(y_true, y_pred, num_classes=10):
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def headline_metrics(summary):
    """The few numbers `dvc metrics show` lists per arm: mean and sd of the headline metrics.
    Everything else (per class, per seed) is in the details file."""
    mean, std = summary["mean"], summary["std"]
    keys = [k for k in HEADLINE_METRICS if k in mean]
    tuned = {"tuned_tau": summary["tuned_tau"]} if "tuned_tau" in summary else {}  # the τ chosen per seed
    return {"mean": {k: mean[k] for k in keys}, "sd": {k: std[k] for k in keys}, **tuned}
