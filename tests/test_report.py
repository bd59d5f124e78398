"""The report says what was run and shows every arm side by side."""
import numpy as np
import pytest
from PIL import Image

from classweights.evaluation import (LOGIT_ADJUSTED, calibration_bins, comparison_pairs, confusion,
                                     pooled_calibration_bins, seed_metrics, summarise_seeds)
from classweights.report import arm_labels, describe_run, summary_markdown, verdict_lines, write_report
from classweights.statistics import compare_arms, compare_metrics, headline_comparison
from tools.sandbox import shipped_params

MINORITY = [0, 1, 2, 3, 4]
NAMES = [str(c) for c in range(10)]  # MNIST's class names


def test_the_run_description_names_source_imbalance_weights_how_applied_epochs_and_seeds():
    params = shipped_params({"imbalance": {"profile": "step", "ratio": 10},
                             "weights": {"strategy": "balanced", "apply": "loss"},
                             "train": {"epochs": 10, "seeds": [0, 1, 2, 3, 4]}})
    assert describe_run(params) == ("mnist-sample, step imbalance, ratio 10; balanced class weights applied to the "
                                     "loss; 10 epochs, 5 seeds")
    other = shipped_params({"data": {"source": "fashion-mnist"}, "imbalance": {"profile": "longtail", "ratio": 2.5},
                            "weights": {"strategy": "effective_number", "beta": 0.99, "apply": "sampling"},
                            "train": {"epochs": 1, "seeds": [3]}})
    assert describe_run(other) == ("fashion-mnist, longtail imbalance, ratio 2.5; effective_number (β = 0.99) class "
                                   "weights applied by class-balanced sampling; 1 epoch, 1 seed")
    own = shipped_params({"imbalance": {"profile": "none"}})
    assert describe_run(own, {"0": 400, "1": 400}).startswith("mnist-sample, no imbalance;")
    assert describe_run(own).startswith("mnist-sample, the data's own class counts;")
    assert arm_labels(other)["weighted"] == "weighted (sampling)"


@pytest.fixture(scope="module")
def three_arms():
    """Three seeds s of three arms on 100 test images: unweighted misses 20 + s minority images,
    weighted 5 + 2s (and one image of class 6), logit-adjusted 10 + 3s (class 0's images first)."""
    y = np.repeat(np.arange(10), 10)
    predictions = {}
    for arm, missed, step in (("unweighted", 20, 1), ("weighted", 5, 2), (LOGIT_ADJUSTED, 10, 3)):
        predictions[arm] = {}
        for seed in ("0", "1", "2"):
            pred = y.copy()
            pred[np.flatnonzero(y < 5)[:missed + step * int(seed)]] = 9
            if arm == "weighted":
                pred[np.flatnonzero(y == 6)[0]] = 0
            predictions[arm][seed] = pred
    proba = {arm: {s: np.eye(10)[p] * 0.9 + 0.01 for s, p in by_seed.items()} for arm, by_seed in predictions.items()}
    per_seed = {arm: {s: seed_metrics(y, p, MINORITY) for s, p in by_seed.items()} for arm, by_seed in proba.items()}
    comparisons = {f"{a}_vs_{b}": compare_arms(per_seed, predictions, y, 0.05, a, b)
                   for a, b in comparison_pairs(predictions)}
    counts = {"train": {str(c): 8 if c < 5 else 40 for c in range(10)}, "test": {str(c): 10 for c in range(10)},
              "class_names": NAMES, "minority_classes": NAMES[:5], "minority_rule": "imbalance.minority_classes"}
    return {"summaries": {arm: summarise_seeds(per_seed[arm]) for arm in per_seed}, "comparisons": comparisons,
            "headline": headline_comparison(comparisons, NAMES[:5]), "class_counts": counts,
            "confusions": {arm: sum(confusion(y, p) for p in predictions[arm].values()) for arm in predictions},
            "reliability": {arm: pooled_calibration_bins(y, by_seed) for arm, by_seed in proba.items()},
            "y": y, "proba": proba}


def test_the_summary_shows_every_arm_and_every_comparison(three_arms):
    params = shipped_params({"train": {"seeds": [0, 1, 2], "epochs": 3}})
    text = summary_markdown(params, three_arms["summaries"], three_arms["comparisons"], three_arms["headline"],
                            three_arms["class_counts"])
    lines = text.splitlines()
    assert lines[0] == ("# mnist-sample, step imbalance, ratio 10; balanced class weights applied to the loss; "
                        "3 epochs, 3 seeds")
    # minority recall differences (15 − s) / 50 = 0.30, 0.28, 0.26: mean 0.28, sd 0.02, half-width
    # t(0.975, 2) 4.3027 * 0.02 / sqrt 3 = 0.0497; logit-adjusted: (10 − 2s) / 50, mean 0.16, half-width 0.0994
    verdicts = [line for line in lines if line.startswith("- **minority recall:")]  # the headline, not the warnings
    assert verdicts[0].startswith("- **minority recall: weighted (loss) − unweighted = +0.280 [+0.230, +0.330] → ")
    assert verdicts[1].startswith(
        "- **minority recall: logit-adjusted (τ = 1) − unweighted = +0.160 [+0.061, +0.259] → ")
    assert verdicts[2].startswith("- **minority recall: weighted (loss) − logit-adjusted (τ = 1) = +0.120 [")
    # the first cost beside each: the minority classes' precision (0 for a class never predicted). Unweighted:
    # classes 0 and 1 never predicted, 2-4 always right: 0.6. Logit-adjusted: class 0 never predicted: 0.8.
    # Weighted: class 0 keeps 5, 3, 1 of its images and gets class 6's: (5/6, 3/4, 1/2 + 4) / 5
    gain = (np.mean([5 / 6, 3 / 4, 1 / 2]) + 4) / 5 - 0.6
    assert len(verdicts) == 3 and f"{gain:+.3f}" == "+0.339"
    assert "**; first cost, minority precision: +0.339 [" in verdicts[0]
    assert "**; first cost, minority precision: +0.200 [+0.200, +0.200] → no significant difference" in verdicts[1]
    for metric in ("minority_precision", "macro_pr_auc", "ece", "brier"):  # beside the gains, each arm
        assert any(line.startswith(f"| {metric} | ") and line.count(" ± ") == 3 for line in lines), metric
    # per class P / R / F1, each arm: class 0 (minority) loses all ten images in the unweighted and logit-adjusted
    # arms (their misses take class 0's first), 5, 7, 9 of them in the weighted arm (recall 0.3 on average),
    # which also predicts one class-6 image as 0: precision 5/6, 3/4, 1/2, F1 2PR / (P + R) per seed
    recall = np.array([5, 3, 1]) / 10
    precision = np.array([5 / 6, 3 / 4, 1 / 2])
    f1 = np.mean(2 * precision * recall / (precision + recall))
    row = next(line for line in lines if line.startswith("| 0* | "))
    assert row == f"| 0* | 0.000 / 0.000 / 0.000 | 0.694 / 0.300 / {f1:.3f} | 0.000 / 0.000 / 0.000 |"
    assert any(line.startswith("| precision of class 9 | ") for line in lines)
    assert any(line.startswith("| F1 of class 9 | ") for line in lines)
    assert "| metric | unweighted | weighted (loss) | logit-adjusted (τ = 1) |" in lines
    assert ("| metric | weighted (loss) − unweighted | logit-adjusted (τ = 1) − unweighted | "
            "weighted (loss) − logit-adjusted (τ = 1) |") in lines
    worst = next(line for line in lines if line.startswith("| worst majority-class recall |"))
    assert worst.count("class 6: -0.100") == 2  # weighted loses one of class 6's ten images
    for heading in ("### weighted (loss) − unweighted", "### logit-adjusted (τ = 1) − unweighted",
                    "### weighted (loss) − logit-adjusted (τ = 1)"):
        assert heading in lines
    # seed 1: unweighted misses 21 minority images, weighted 7 and one of class 6, logit-adjusted 13
    mcnemar = next(line for line in lines if line.startswith("| 1 |"))
    assert mcnemar.startswith("| 1 | 14 vs 1, p ") and "| 8 vs 0, p " in mcnemar and "| 6 vs 1, p " in mcnemar
    # three seeds: no verdict is possible, and the per-class intervals are simultaneous ones
    assert "Per-class rows (and the worst majority class) show 99.5% simultaneous (Bonferroni over 10) intervals" in text
    assert not text.rstrip().splitlines()[-1].startswith("Machine:")  # no record given, no line


def test_a_borderline_verdict_says_so_and_what_would_settle_it(three_arms):
    # five seeds of +0.01: the zero-width interval excludes 0, the sign-flip p (2/32) does not reach 0.05
    difference = compare_metrics({"minority_recall": [0.01] * 5}, {"minority_recall": [0.0] * 5}, 0.05)
    comparison = {"arm": "weighted", "baseline": "unweighted", "difference": difference}
    labels = arm_labels(shipped_params())
    assert verdict_lines({"weighted_vs_unweighted": comparison}, labels) == [
        "minority recall: weighted (loss) − unweighted = +0.010 [+0.010, +0.010] → no significant difference "
        "(borderline: about 7 seeds would settle it)"]


def test_the_summary_ends_with_the_machine_it_was_made_on(three_arms):
    machine = {"cpu": "AMD EPYC (cpu family 25, model 1)", "isa": ["avx", "avx2", "fma"], "cores": 2,
               "train_threads": 1, "python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.15.1", "numpy": "2.4.6",
               "dvc": "3.67.1", "os": "Linux-6.1-x86_64"}
    params = shipped_params({"train": {"seeds": [0, 1, 2]}})
    text = summary_markdown(params, three_arms["summaries"], three_arms["comparisons"], three_arms["headline"],
                            three_arms["class_counts"], machine)
    assert text.rstrip().splitlines()[-1] == (
        "Machine: AMD EPYC (cpu family 25, model 1) with avx, avx2, fma; 2 cores, train.threads 1; Python 3.11.7, "
        "TensorFlow 2.21.0, Keras 3.15.1, NumPy 2.4.6, DVC 3.67.1; Linux-6.1-x86_64.")


def test_write_report_writes_the_figures_and_summary_and_nothing_else(three_arms, tmp_path):
    params = shipped_params({"train": {"seeds": [0, 1, 2]}})
    curve = {"loss": np.array([1.0, 0.5]), "accuracy": np.array([0.6, 0.8]),
             "val_loss": np.array([1.1, 0.7]), "val_accuracy": np.array([0.5, 0.7])}
    write_report(tmp_path / "reports", params, three_arms["summaries"], three_arms["comparisons"],
                 three_arms["headline"], three_arms["class_counts"], three_arms["confusions"],
                 {"unweighted": curve, "weighted": curve}, reliability=three_arms["reliability"])
    written = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert written == ["confusion_matrices.png", "per_class_recall.csv", "per_class_recall.png",
                       "reliability_diagrams.png", "summary.md", "training_curves.png"]
    description = "mnist-sample, step imbalance, ratio 10; balanced class weights applied to the loss; 10 epochs, 3 seeds"
    for name in ("per_class_recall.png", "confusion_matrices.png", "training_curves.png", "reliability_diagrams.png"):
        with Image.open(tmp_path / "reports" / name) as png:
            assert png.format == "PNG" and png.text["Title"].startswith(description), name
    with Image.open(tmp_path / "reports/per_class_recall.png") as png:
        assert "minority recall: logit-adjusted (τ = 1) − unweighted = +0.160" in png.text["Title"]
    csv_lines = (tmp_path / "reports/per_class_recall.csv").read_text().splitlines()
    assert csv_lines[0] == "class,training_images,unweighted,weighted,logit_adjusted"
    assert csv_lines[1] == "0,8,0.000000,0.300000,0.000000"  # weighted misses 5, 7, 9 of class 0's ten images
    assert list(tmp_path.iterdir()) == [tmp_path / "reports"]  # no temporary left beside it


def test_the_reliability_diagram_pools_every_seed_s_test_images(three_arms):
    y, proba = three_arms["y"], three_arms["proba"]["weighted"]
    count, confidence, accuracy = three_arms["reliability"]["weighted"]
    # every image's top-class confidence is 0.91, in bin (0.867, 0.933]: 300 images, the three seeds' accuracies pooled
    assert count.tolist() == [0] * 13 + [300, 0] and confidence[13] == pytest.approx(0.91)
    right = sum(int(np.sum(p.argmax(axis=1) == y)) for p in proba.values())
    assert accuracy[13] == right / 300 == pytest.approx(np.mean([calibration_bins(y, p)[2][13] for p in proba.values()]))


# ---- real class names: the measured imbalance, the figures' layout ----------------------------------

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TEST_COUNTS = [35, 37, 36, 35, 36, 37, 35, 36, 37, 36]  # the data's own test counts: balanced for every purpose


@pytest.fixture(scope="module")
def clothes():
    """Ten seeds on Fashion-MNIST's class names: the weighted arm finds 25 more T-shirts than the
    unweighted one and loses 10 shirts, every seed (a little more with each seed)."""
    y = np.repeat(np.arange(10), TEST_COUNTS)
    seeds = [str(s) for s in range(10)]
    predictions = {"unweighted": {}, "weighted": {}}
    for s in seeds:
        unweighted, weighted = y.copy(), y.copy()
        unweighted[np.flatnonzero(y == 0)[:28 + int(s) % 3]] = 6
        weighted[np.flatnonzero(y == 0)[:3]] = 6
        weighted[np.flatnonzero(y == 6)[:10 + int(s) % 2]] = 0
        predictions["unweighted"][s], predictions["weighted"][s] = unweighted, weighted
    per_seed = {arm: {s: seed_metrics(y, np.eye(10)[p] * 0.9 + 0.01, [0, 9], FASHION) for s, p in by_seed.items()}
                for arm, by_seed in predictions.items()}
    comparisons = {"weighted_vs_unweighted": compare_arms(per_seed, predictions, y, 0.05, "weighted", "unweighted")}
    counts = {"train": dict(zip(FASHION, [14, 290, 280, 300, 270, 280, 300, 290, 285, 15])),
              "test": dict(zip(FASHION, TEST_COUNTS)), "class_names": FASHION,
              "minority_classes": ["T-shirt/top", "Ankle boot"], "minority_rule": "at most half the largest"}
    params = shipped_params({"data": {"source": "folder", "path": "data/input/clothes"},
                             "imbalance": {"profile": "none"}, "evaluate": {"logit_adjustment_tau": 0.0},
                             "train": {"seeds": list(range(10)), "epochs": 3}})
    return {"params": params, "summaries": {arm: summarise_seeds(per_seed[arm]) for arm in per_seed},
            "comparisons": comparisons, "class_counts": counts,
            "headline": headline_comparison(comparisons, ["T-shirt/top", "Ankle boot"]),
            "confusions": {arm: sum(confusion(y, p) for p in predictions[arm].values()) for arm in predictions}}


def test_the_data_s_own_imbalance_is_its_measured_ratio_and_35_against_37_test_images_is_balanced(clothes):
    text = summary_markdown(clothes["params"], clothes["summaries"], clothes["comparisons"], clothes["headline"],
                            clothes["class_counts"])
    # largest / smallest training class: 300 / 14 = 21.43
    assert text.startswith("# folder data/input/clothes, own imbalance, ratio 21.4 (largest / smallest class); ")
    assert "Data: folder data/input/clothes, the data's own class counts (largest / smallest training class: 21.4);" \
        in text
    assert "ratio 10" not in text and "imbalanced" not in text  # 37 / 35 = 1.06, below 1.5
    uneven = {**clothes["class_counts"], "test": {**clothes["class_counts"]["test"], "Bag": 20, "Coat": 40}}
    text = summary_markdown(clothes["params"], clothes["summaries"], clothes["comparisons"], clothes["headline"],
                            uneven)
    assert "**The test set is imbalanced** (20 to 40 images a class, ratio 2 ≥ 1.5, the data's own counts)" in text
    even = {name: 50 for name in FASHION}
    assert describe_run(clothes["params"], even).startswith("folder data/input/clothes, no imbalance; ")


def text_boxes(fig):
    """(text, window extent) of every label, title and legend entry of a drawn figure: not the
    numbers and marks inside the plots."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)  # lays it out as savefig does
    inside = {id(t) for ax in fig.axes for t in ax.texts}
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in inside]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts], renderer


def layout_problems(fig):
    """Labels that overlap each other or a plot they do not belong to, or leave the figure."""
    boxes, renderer = text_boxes(fig)
    problems = [f"{text!r} leaves the figure" for text, box in boxes
                if box.x0 < -0.5 or box.y0 < -0.5 or box.x1 > fig.bbox.x1 + 0.5 or box.y1 > fig.bbox.y1 + 0.5]
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if width > 0.5 and height > 0.5:
                problems.append(f"{a!r} overlaps {b!r}")
    for ax in fig.axes:
        area = ax.get_window_extent(renderer)
        for label in ax.get_yticklabels() + ax.get_xticklabels():
            box = label.get_window_extent(renderer)
            if label.get_text() and box.x1 > area.x0 + 0.5 and box.x0 < area.x1 - 0.5 and \
                    box.y1 > area.y0 + 0.5 and box.y0 < area.y1 - 0.5:
                problems.append(f"tick label {label.get_text()!r} lies on its plot")
    return problems


def test_long_class_names_lay_out_without_overlap_and_significant_recalls_are_marked(clothes, tmp_path):
    from classweights.report import arm_labels, plot_confusions, plot_recall

    labels = arm_labels(clothes["params"])
    counts = clothes["class_counts"]
    title = "a run\nweighted − unweighted = +0.1\nlogit-adjusted − unweighted = +0.1\nweighted − logit-adjusted = 0"
    recall = plot_recall(tmp_path / "recall.png", clothes["summaries"], counts["train"], counts["minority_classes"],
                         labels, title, clothes["comparisons"])
    confusions = plot_confusions(tmp_path / "confusions.png", {**clothes["confusions"], "third": clothes["confusions"]
                                                               ["weighted"]}, {**labels, "third": "logit-adjusted"},
                                 title, FASHION)
    assert layout_problems(recall) == [] and layout_problems(confusions) == []
    # ▲ over the weighted arm's T-shirt/top bar (class 0), ▼ over its Shirt bar (class 6), nothing else
    marks = sorted((round(t.get_position()[0]), t.get_text()) for t in recall.axes[0].texts)
    assert marks == [(0, "▲"), (6, "▼")]
    assert "Ankle boot" in [t.get_text() for t in confusions.axes[2].get_yticklabels()]


def test_a_model_near_chance_and_a_class_with_few_test_images_are_named(three_arms, clothes):
    from classweights.report import too_small_warnings

    labels = arm_labels(clothes["params"])
    assert too_small_warnings(clothes["summaries"], clothes["class_counts"]["test"], labels) == []  # 35 to 37
    # three_arms: unweighted's balanced accuracy over its seeds (100 - 20 - s) / 100 = 0.79 is far from chance
    test = {**{str(c): 100 for c in range(10)}, "9": 6}
    near = {**three_arms["summaries"], "weighted": {"mean": {"balanced_accuracy": 0.19}}}  # chance 0.1 + 0.09
    lines = too_small_warnings(near, test, labels)
    assert lines[:3] == ["", "## Too small to mean much", ""]
    assert lines[3].startswith("- **weighted (loss) is near chance**: balanced accuracy 0.190, chance 1/10 = 0.100")
    assert lines[4].startswith("- **Few test images**: 9 6 (recall in steps of 1/6); fewer than 20 a class")
    assert len(lines) == 5  # 0.21 would be no warning: the rule is within 0.1 of chance
    near["weighted"]["mean"]["balanced_accuracy"] = 0.21
    assert len(too_small_warnings(near, test, labels)) == 4
    text = summary_markdown(clothes["params"], clothes["summaries"], clothes["comparisons"], clothes["headline"],
                            {**clothes["class_counts"], "test": {**clothes["class_counts"]["test"], "Ankle boot": 6}})
    assert "- **Few test images**: Ankle boot 6 (recall in steps of 1/6)" in text


def test_feature_vectors_are_rows_in_the_summary_not_images(clothes):
    table = clothes["params"].model_copy(update={"data": clothes["params"].data.model_copy(
        update={"source": "csv", "path": "data/input/t.csv"})})
    counts = {**clothes["class_counts"], "test": {**clothes["class_counts"]["test"], "Ankle boot": 6}}
    text = summary_markdown(table, clothes["summaries"], clothes["comparisons"], clothes["headline"], counts)
    assert "Training rows per class: " in text and "- **Few test rows**: Ankle boot 6" in text
    assert "mean over rows of the sum over classes" in text and "Test rows only the first arm gets right" in text
    assert "images" not in text
    mlp = clothes["params"].model_copy(update={"model": clothes["params"].model.model_copy(update={"backbone": "mlp"})})
    assert "Training rows per class: " in summary_markdown(mlp, clothes["summaries"], clothes["comparisons"],
                                                            clothes["headline"], counts)


def test_the_summary_says_how_far_each_trained_arm_fits_its_training_split(three_arms):
    params = shipped_params({"train": {"seeds": [0, 1, 2], "epochs": 3}})
    summaries = {arm: {**summary, "mean": {**summary["mean"]}} for arm, summary in three_arms["summaries"].items()}
    assert "Fit of the training split" not in summary_markdown(params, summaries, three_arms["comparisons"],
                                                               three_arms["headline"], three_arms["class_counts"])
    summaries["unweighted"]["mean"].update(train_accuracy=0.9876, train_minority_recall=0.5)
    summaries["weighted"]["mean"].update(train_accuracy=0.95, train_minority_recall=0.97)
    text = summary_markdown(params, summaries, three_arms["comparisons"], three_arms["headline"],
                            three_arms["class_counts"])
    line = next(line for line in text.splitlines() if line.startswith("Fit of the training split"))
    assert line.endswith(": unweighted accuracy 0.9876, minority recall 0.5000; weighted (loss) accuracy 0.9500, "
                         "minority recall 0.9700.")
    assert "| train_accuracy |" not in text  # a test metrics table row only for metrics every arm has
