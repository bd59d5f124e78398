"""Test-set metrics against answers worked by hand, on data where macro-F1 differs from weighted
and micro F1, and balanced accuracy from accuracy (scikit-learn as the independent check)."""
import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from classweights.evaluation import (confusion, headline_metrics, in_class_order, over_seeds, seed_metrics,
                                     summarise_seeds)

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
    assert list(headline["mean"]) == ["accuracy", "loss", "balanced_accuracy", "macro_f1", "minority_recall"]
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
