"""Test-set metrics against answers worked by hand, on data where macro-F1 differs from weighted
and micro F1, balanced accuracy from accuracy, macro PR-AUC from its micro and weighted forms, and
the ECE of 15 equal-width bins of the top-class confidence from other binnings and confidences
(scikit-learn as the independent check where it has the metric)."""
import warnings

import numpy as np
import pytest
from sklearn.metrics import (average_precision_score, balanced_accuracy_score, brier_score_loss, f1_score, log_loss,
                             precision_recall_fscore_support, roc_auc_score)

from classweights.evaluation import (calibration_bins, confusion, expected_calibration_error, headline_metrics,
                                     in_class_order, over_seeds, seed_metrics, summarise_seeds, training_fit)

# 26 test images: two of each class 0-8, eight of class 9. Six class-9 images are predicted as 0,
# and both class-8 images as 7, so class 8 is never predicted.
Y_TRUE = np.repeat(np.arange(10), [2] * 9 + [8])
Y_PRED = Y_TRUE.copy()
Y_PRED[-6:] = 0
Y_PRED[16:18] = 7


def one_hot_proba(pred):
    """0.91 on the predicted class, 0.01 on the nine others (rows sum to 1)."""
    return np.eye(10)[pred] * 0.9 + 0.01


def test_seed_metrics_by_hand():
    m = seed_metrics(Y_TRUE, one_hot_proba(Y_PRED), minority=[0, 9])
    assert m["accuracy"] == 18 / 26
    # recalls: 1 for classes 0-7, 0 for 8, 2/8 for 9
    assert m["balanced_accuracy"] == pytest.approx((8 + 0 + 0.25) / 10)
    assert m["minority_recall"] == pytest.approx((1 + 0.25) / 2)
    # F1 = 2 tp / (2 tp + fp + fn): class 0: 4 / (4 + 6) = 0.4; class 7: 4 / (4 + 2) = 2/3;
    # class 8: 0; class 9: 4 / (4 + 6) = 0.4; the six others 1. Weighted F1 (by support) is
    # 0.667, micro F1 = accuracy = 0.692
    f1 = [0.4, 1, 1, 1, 1, 1, 1, 2 / 3, 0, 0.4]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert [m["per_class"][str(c)]["f1"] for c in range(10)] == pytest.approx(f1)
    assert m["per_class"]["0"]["precision"] == pytest.approx(2 / 8)
    assert m["per_class"]["8"]["precision"] == 0  # never predicted: 0, not undefined or 1
    assert m["per_class"]["9"]["recall"] == 0.25
    assert m["loss"] == pytest.approx(-(18 * np.log(0.91) + 8 * np.log(0.01)) / 26)
    assert all(type(v) is float for v in [m["accuracy"], m["loss"], *m["per_class"]["3"].values()])


def test_the_averages_differ_on_this_data_as_scikit_learn_says():
    m = seed_metrics(Y_TRUE, one_hot_proba(Y_PRED), minority=[0, 9])
    assert m["macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y_TRUE, Y_PRED))
    others = [f1_score(Y_TRUE, Y_PRED, average=a) for a in ("weighted", "micro")] + [m["accuracy"]]
    assert all(abs(m["macro_f1"] - o) > 0.05 for o in others)
    assert abs(m["balanced_accuracy"] - m["accuracy"]) > 0.1


def test_seed_metrics_is_silent_when_a_class_is_never_predicted():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's "ill-defined precision" would fill the stage log
        m = seed_metrics(Y_TRUE, one_hot_proba(Y_PRED), minority=[8])
    assert m["minority_recall"] == 0


def test_loss_and_per_class_metrics_when_the_test_set_lacks_classes():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    m = seed_metrics(y, one_hot_proba(pred), minority=[0])
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.91, 0.01, 0.91, 0.91])))
    assert m["balanced_accuracy"] == 0.75  # over the classes present: (1/2 + 1) / 2
    assert sorted(m["per_class"], key=int) == [str(c) for c in range(10)]
    assert m["per_class"]["5"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_no_minority_classes_no_minority_recall():
    m = seed_metrics(Y_TRUE, one_hot_proba(Y_PRED), minority=[])
    assert "minority_recall" not in m
    assert "minority_recall" not in headline_metrics(summarise_seeds({"0": m}))["mean"]


def test_per_class_results_are_keyed_by_class_name_in_class_order():
    names = ["T-shirt/top", "Trouser", "a.b", "3", "dog", "cat", "x y", "é", "0", "last"]
    m = seed_metrics(Y_TRUE, one_hot_proba(Y_PRED), minority=[0, 9], class_names=names)
    assert list(m["per_class"]) == names
    assert m["per_class"]["last"]["recall"] == 0.25 and m["per_class"]["T-shirt/top"]["precision"] == pytest.approx(2 / 8)
    # a name with a dot survives the mean over seeds (no dotted keys are joined and split)
    summary = summarise_seeds({"0": m, "1": m})
    assert summary["mean"]["per_class"]["a.b"] == m["per_class"]["a.b"]


def test_over_seeds_reduces_leaf_by_leaf():
    trees = [{"a": 1.0, "b": {"c.d": 2.0}}, {"a": 3.0, "b": {"c.d": 6.0}}]
    assert over_seeds(trees, np.max) == {"a": 3.0, "b": {"c.d": 6.0}}


def test_class_counts_are_put_in_class_order_from_their_alphabetical_file_order():
    on_disk = {"class_names": ["zebra", "ant"], "minority_classes": ["ant"], "train": {"ant": 3, "zebra": 9},
               "test": {"ant": 1, "zebra": 2}}
    ordered = in_class_order(on_disk)
    assert list(ordered["train"].items()) == [("zebra", 9), ("ant", 3)] and list(ordered["test"]) == ["zebra", "ant"]
    assert ordered["minority_classes"] == ["ant"]


def test_training_fit_is_plain_accuracy_and_the_minority_classes_mean_recall():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    fit = training_fit(y, predicted, minority=[1, 2])
    # 8 of 10 right (balanced accuracy would be (3/4 + 1/2 + 1)/3 = 0.75); recall of class 1 is 1/2,
    # of class 2 is 4/4 (its precision, 4/5, would give 0.65)
    assert fit == {"train_accuracy": pytest.approx(0.8), "train_minority_recall": pytest.approx(0.75)}
    assert training_fit(y, predicted, minority=[]) == {"train_accuracy": pytest.approx(0.8)}


def test_summarise_seeds_mean_and_sample_sd():
    per_seed = {"0": {"accuracy": 0.8, "per_class": {"1": {"recall": 0.5}}},
                "1": {"accuracy": 0.9, "per_class": {"1": {"recall": 0.7}}},
                "2": {"accuracy": 1.0, "per_class": {"1": {"recall": 0.9}}}}
    summary = summarise_seeds(per_seed)
    assert summary["mean"] == {"accuracy": pytest.approx(0.9), "per_class": {"1": {"recall": pytest.approx(0.7)}}}
    assert summary["std"]["accuracy"] == pytest.approx(0.1)  # sample sd (n − 1): 0.0816 with n
    assert summary["std"]["per_class"]["1"]["recall"] == pytest.approx(0.2)
    assert summary["seeds"] is per_seed


def test_one_seed_has_sd_zero():
    summary = summarise_seeds({"0": {"accuracy": 0.8}})
    assert summary["std"] == {"accuracy": 0.0} and summary["mean"] == {"accuracy": 0.8}


def test_headline_metrics_keep_the_few_numbers_in_order():
    per_seed = {s: seed_metrics(Y_TRUE, one_hot_proba(Y_PRED if s == "0" else Y_TRUE), minority=[0, 9])
                for s in ("0", "1")}
    summary = summarise_seeds(per_seed)
    headline = headline_metrics(summary)
    assert list(headline["mean"]) == ["accuracy", "loss", "balanced_accuracy", "macro_f1", "minority_recall",
                                      "minority_precision", "macro_pr_auc", "ece", "brier"]
    assert headline["mean"]["accuracy"] == pytest.approx((18 / 26 + 1) / 2)
    assert headline["sd"]["accuracy"] == pytest.approx(np.std([18 / 26, 1], ddof=1))
    assert set(headline) == {"mean", "sd"}  # per-class recalls live in metrics/details/ only


def test_confusion_is_ten_by_ten_when_the_test_set_lacks_classes():
    # matrices of seeds are summed: each must have a row and column for every class
    matrix = confusion(np.array([0, 0, 1]), np.array([0, 1, 1]))
    assert matrix.shape == (10, 10) and matrix[0, 1] == 1 and matrix[1, 1] == 1 and matrix.sum() == 3


def test_confusion_counts_every_class():
    matrix = confusion(Y_TRUE, Y_PRED)
    assert matrix.shape == (10, 10)
    assert matrix[9, 0] == 6 and matrix[9, 9] == 2 and matrix[8, 7] == 2 and matrix[8, 8] == 0
    assert matrix.sum() == 26


def test_minority_precision_is_the_mean_of_the_minority_classes_precision_as_scikit_learn_gives_it():
    m = seed_metrics(Y_TRUE, one_hot_proba(Y_PRED), minority=[0, 9])
    precision = precision_recall_fscore_support(Y_TRUE, Y_PRED, labels=range(10), zero_division=0)[0]
    # class 0: 2 right of 8 predicted; class 9: 2 of 2; over every class the mean is another number
    assert m["minority_precision"] == pytest.approx((2 / 8 + 1) / 2) == np.mean(precision[[0, 9]])
    assert abs(m["minority_precision"] - np.mean(precision)) > 0.1


# Three classes, scores that rank differently per class, so that macro, micro and weighted
# average precision differ, and ROC-AUC too.
Y_RANK = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
P_RANK = np.array([[.6, .3, .1], [.4, .4, .2], [.3, .2, .5], [.5, .1, .4], [.2, .7, .1], [.45, .35, .2],
                   [.1, .2, .7], [.35, .15, .5], [.2, .5, .3], [.1, .1, .8], [.5, .2, .3], [.3, .3, .4]])


def test_macro_pr_auc_is_scikit_learn_s_macro_average_precision_one_vs_rest():
    m = seed_metrics(Y_RANK, P_RANK, minority=[1])
    expected = average_precision_score(Y_RANK, P_RANK, average="macro")
    assert m["macro_pr_auc"] == pytest.approx(expected)
    one_hot = np.eye(3)[Y_RANK]
    others = [average_precision_score(one_hot, P_RANK, average=a) for a in ("micro", "weighted")]
    others.append(roc_auc_score(Y_RANK, P_RANK, multi_class="ovr"))
    assert all(abs(m["macro_pr_auc"] - o) > 0.01 for o in others)
    # class 1 by hand: its two images rank 1st (0.7) and 4th (0.35, after 0.5 and 0.4): (1/1 + 2/4) / 2
    assert average_precision_score(Y_RANK == 1, P_RANK[:, 1]) == pytest.approx(0.75)


def test_macro_pr_auc_averages_over_the_classes_the_test_set_holds():
    proba = np.hstack([P_RANK * 0.9, np.full((12, 1), 0.1)])  # a fourth class no test image belongs to
    m = seed_metrics(Y_RANK, proba, minority=[1])
    assert m["macro_pr_auc"] == pytest.approx(np.mean([average_precision_score(Y_RANK == c, proba[:, c])
                                                       for c in range(3)]))


def test_brier_score_is_the_sum_over_classes_of_squared_errors_averaged_over_images():
    m = seed_metrics(Y_TRUE, one_hot_proba(Y_PRED), minority=[0, 9])
    # right: (0.91 − 1)² + 9 · 0.01² = 0.009; wrong: 0.91² + (0.01 − 1)² + 8 · 0.01² = 1.809
    assert m["brier"] == pytest.approx((18 * 0.009 + 8 * 1.809) / 26)
    # not halved (binary Brier's [0, 1] scale), not divided by the number of classes
    assert m["brier"] != pytest.approx(brier_score_loss(Y_TRUE, one_hot_proba(Y_PRED), labels=range(10)) / 2)
    assert m["loss"] == pytest.approx(log_loss(Y_TRUE, one_hot_proba(Y_PRED)))  # the NLL


# Five images, three classes, top-class confidences 0.62, 0.68, 0.85, 0.75, 0.82. The 15 bins put
# 0.62 and 0.68 apart ((0.600, 0.667] and (0.667, 0.733]) where 10 bins join them, and join 0.82 and
# 0.85 ((0.800, 0.867]) where one bin per image (equal-mass binning) would not.
Y_CAL = np.array([0, 1, 1, 0, 2])
P_CAL = np.array([[.62, .20, .18], [.68, .27, .05], [.10, .85, .05], [.21, .04, .75], [.82, .10, .08]])


def ece_by_hand(confidence, right, edges):
    index = np.searchsorted(edges, confidence, side="left") - 1  # bins closed on the right
    return sum(np.sum(index == b) / len(confidence) * abs(right[index == b].mean() - confidence[index == b].mean())
               for b in set(index))


def test_ece_uses_fifteen_equal_width_bins_of_the_top_class_confidence():
    m = seed_metrics(Y_CAL, P_CAL, minority=[1])
    # right, wrong, right, wrong, wrong; per bin |accuracy − confidence| times its share of images:
    # (0.38 + 0.68 + 0.75 + 2 · |0.5 − 0.835|) / 5
    assert m["ece"] == pytest.approx(2.48 / 5)
    top, right = P_CAL.max(axis=1), P_CAL.argmax(axis=1) == Y_CAL
    assert m["ece"] == pytest.approx(ece_by_hand(top, right, np.linspace(0, 1, 16)))
    wrong_answers = {"10 bins": ece_by_hand(top, right, np.linspace(0, 1, 11)),  # 1.72 / 5
                     "one bin per image": np.mean(np.abs(right - top)),  # 2.78 / 5
                     "true-class confidence": ece_by_hand(P_CAL[np.arange(5), Y_CAL], right, np.linspace(0, 1, 16))}
    assert wrong_answers["10 bins"] == pytest.approx(1.72 / 5) and wrong_answers["one bin per image"] == pytest.approx(2.78 / 5)
    assert all(abs(m["ece"] - value) > 0.05 for value in wrong_answers.values()), wrong_answers


def test_a_confidence_of_one_lands_in_the_last_bin():
    count, confidence, accuracy = calibration_bins(np.array([0, 2]), np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert count.tolist() == [0] * 14 + [2] and confidence[14] == 1 and accuracy[14] == 0.5
    assert np.isnan(accuracy[:14]).all()
    assert expected_calibration_error(np.array([0, 2]), np.array([[0.0, 0.0, 1.0]] * 2)) == 0.5
