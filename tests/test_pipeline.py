"""End to end: the real dvc.yaml, real `dvc repro`, real (tiny) training. One project runs once
(conftest's `finished`); each edit test works on its own copy of it (`project`)."""
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import balanced_accuracy_score

from tools.sandbox import dvc, ran_stages, set_params

ALL_STAGES = sorted(["check_params", "fetch", "preprocess", "compute_weights", "frozen_features", "train_unweighted@0",
                     "train_unweighted@1", "train_weighted@0", "train_weighted@1", "evaluate"])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DESCRIPTION = "mnist-sample, step imbalance, ratio 5; balanced class weights applied to the loss; 1 epoch, 2 seeds"
HEADLINE = ("accuracy", "loss", "balanced_accuracy", "macro_f1", "minority_recall", "minority_precision", "macro_pr_auc",
            "ece", "brier")
COMPARED_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "minority_recall", "minority_precision", "macro_pr_auc",
                    "ece", "loss", "brier")
PAIRS = {"weighted_vs_unweighted": ("weighted", "unweighted"),
         "logit_adjusted_vs_unweighted": ("logit_adjusted", "unweighted"),
         "weighted_vs_logit_adjusted": ("weighted", "logit_adjusted")}


def test_first_repro_runs_every_stage_and_writes_every_output(finished):
    project, first = finished
    assert ran_stages(first) == ALL_STAGES
    for arm in ("unweighted", "weighted"):
        for seed in (0, 1):
            folder = project / "models" / arm / f"seed_{seed}"
            assert (folder / "model.keras").stat().st_size > 10_000
            assert sorted(p.name for p in folder.iterdir()) == ["history.json", "model.keras", "test_proba.npz",
                                                                     "train_pred.npz"]
            # the fit's seconds beside it, and evaluate's mean of them
            fit = json.loads((project / f"metrics/seconds/{arm}/seed_{seed}.json").read_text())["fit_seconds"]
            seconds = json.loads((project / "metrics/training_seconds.json").read_text())[arm]
            assert 0 < fit < 600 and seconds["seeds"][str(seed)] == fit
            history = json.loads((folder / "history.json").read_text())
            assert sorted(history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
            assert all(len(values) == 1 for values in history.values())  # one epoch
    y_train = np.load(project / "data/splits.npz")["y_train"]
    for arm in ("unweighted", "weighted"):  # how far each arm fits its training split, seed by seed
        fitted = [np.load(project / f"models/{arm}/seed_{s}/train_pred.npz")["pred"] for s in (0, 1)]
        mean = json.loads((project / f"metrics/{arm}.json").read_text())["mean"]
        assert mean["train_accuracy"] == pytest.approx(np.mean([np.mean(f == y_train) for f in fitted]))
    counts = json.loads((project / "data/class_counts.json").read_text())
    total = {c: counts["train"][c] + counts["val"][c] for c in counts["train"]}
    assert total == {str(c): 8 if c < 5 else 40 for c in range(10)}  # step: n_max 40, ratio 5
    assert counts["test"] == {str(c): 100 for c in range(10)} and counts["minority_classes"] == ["0", "1", "2", "3", "4"]
    weights = json.loads((project / "data/class_weights.json").read_text())
    assert weights["0"] > 1 > weights["9"]
    provenance = json.loads((project / "data/provenance.json").read_text())
    assert provenance["source"] == "mnist-sample" and provenance["images_per_class"]["train"][3] == 400
    assert provenance["class_names"] == [str(digit) for digit in range(10)] and provenance["image_shape"] == [28, 28]
    for png in ("per_class_recall.png", "confusion_matrices.png", "training_curves.png", "reliability_diagrams.png"):
        assert (project / "reports" / png).read_bytes()[:8] == PNG_MAGIC
        with Image.open(project / "reports" / png) as image:
            assert image.text["Title"].startswith(DESCRIPTION), png
    summary = (project / "reports/summary.md").read_text()
    assert summary.startswith(f"# {DESCRIPTION}\n") and "| minority_recall |" in summary
    assert "| minority_precision |" in summary and "| ece |" in summary and "first cost, minority precision" in summary
    assert "| metric | unweighted | weighted (loss) | logit-adjusted (τ = 1) |" in summary and "McNemar" in summary
    last = first.stdout[first.stdout.rindex("> python -m stages.evaluate"):].splitlines()[1]
    assert last.startswith("evaluate: minority recall: weighted (loss) − unweighted = ")
    assert "logit-adjusted (τ = 1) − unweighted" in last and "weighted (loss) − logit-adjusted (τ = 1)" in last


def test_metrics_show_lists_every_arm_and_the_comparisons(finished):
    project, _ = finished
    shown = json.loads(dvc(project, "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    assert "metrics/class_counts.json" not in files and "data/class_counts.json" not in files
    accuracy = {}
    for arm in ("unweighted", "weighted", "logit_adjusted"):
        metrics = files[f"metrics/{arm}.json"]["data"]
        # the trained arms also say how far they fit their training split; post-hoc adjustment trains nothing
        fit = {"train_accuracy", "train_minority_recall"} if arm != "logit_adjusted" else set()
        assert set(metrics) == {"mean", "sd"} and set(metrics["mean"]) == set(HEADLINE) | fit
        details = json.loads((project / f"metrics/details/{arm}.json").read_text())
        assert set(details["seeds"]) == {"0", "1"}
        assert set(details["mean"]["per_class"]["4"]) == {"precision", "recall", "f1"}
        accuracy[arm] = [details["seeds"][s]["accuracy"] for s in ("0", "1")]
        assert metrics["mean"]["accuracy"] == pytest.approx(np.mean(accuracy[arm]))
        assert metrics["sd"]["accuracy"] == pytest.approx(np.std(accuracy[arm], ddof=1))
    comparison = files["metrics/comparison.json"]["data"]
    assert set(comparison) == {"alpha", *PAIRS}
    for pair, (arm, baseline) in PAIRS.items():
        assert set(comparison[pair]) == {*COMPARED_METRICS, "worst_majority_recall"}
        written = json.loads((project / "metrics/comparison.json").read_text())[pair]["accuracy"]
        assert set(written) == {"mean", "ci_low", "ci_high", "p", "verdict", "borderline", "seeds_to_settle"}
        # DVC's metrics show leaves out null values (no seeds to settle a verdict that is firm)
        assert set(comparison[pair]["accuracy"]) == {key for key, value in written.items() if value is not None}
        assert comparison[pair]["worst_majority_recall"]["class"] in ("5", "6", "7", "8", "9")  # MNIST's names
        difference = np.mean(accuracy[arm]) - np.mean(accuracy[baseline])
        assert comparison[pair]["accuracy"]["mean"] == pytest.approx(difference)
    details = json.loads((project / "metrics/details/comparison.json").read_text())
    assert set(details) == set(PAIRS) and details["weighted_vs_unweighted"]["difference"]["accuracy"]["n_seeds"] == 2
    assert set(details["logit_adjusted_vs_unweighted"]["mcnemar"]) == {"0", "1"}


def test_the_logit_adjusted_arm_is_the_same_seed_s_unweighted_model_divided_by_the_prior(finished):
    # tau 1: argmax (log p − log pi) = argmax p / pi, computed here without logs
    project, _ = finished
    counts = json.loads((project / "data/class_counts.json").read_text())["train"]
    prior = np.array([counts[str(c)] for c in range(10)]) / sum(counts.values())
    y_test = np.load(project / "data/splits.npz")["y_test"]
    details = json.loads((project / "metrics/details/logit_adjusted.json").read_text())
    for seed in ("0", "1"):
        proba = np.load(project / f"models/unweighted/seed_{seed}/test_proba.npz")["proba"]
        predicted = np.argmax(proba / prior, axis=1)
        assert details["seeds"][seed]["accuracy"] == pytest.approx(np.mean(predicted == y_test))


def test_second_repro_runs_nothing(project):
    again = dvc(project, "repro")
    assert ran_stages(again) == []
    assert "up to date" in again.stdout


def test_a_weights_and_remedy_edit_reruns_only_weights_the_remedy_arm_and_evaluate(project):
    # one edit of both, to train the arm once: that a remedy edit alone leaves compute_weights
    # alone is dvc.yaml's params (test_dvc_yaml); every remedy's own words: test_remedies
    before = {name: (project / name).read_bytes() for name in
              ("metrics/weighted.json", "metrics/unweighted.json", "reports/summary.md", "reports/per_class_recall.png")}
    set_params(project, {"weights": {"strategy": "sqrt_inverse"}, "loss": {"name": "ldam"}})
    edited = dvc(project, "repro")
    assert ran_stages(edited) == ["check_params", "compute_weights", "evaluate", "train_weighted@0", "train_weighted@1"]
    summary = (project / "reports/summary.md").read_text()
    assert "remedy LDAM (max margin 0.5, s = 30) + sqrt_inverse class weights applied to the loss" in summary
    assert (project / "metrics/weighted.json").read_bytes() != before["metrics/weighted.json"]
    assert (project / "metrics/unweighted.json").read_bytes() == before["metrics/unweighted.json"]
    assert summary.encode() != before["reports/summary.md"]
    assert (project / "reports/per_class_recall.png").read_bytes() != before["reports/per_class_recall.png"]
    proba = np.load(project / "models/weighted/seed_0/test_proba.npz")["proba"]
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)  # probabilities from the cosine head too


def test_evaluate_edit_reruns_only_evaluate_and_tau_zero_turns_the_logit_adjusted_arm_off(project):
    set_params(project, {"evaluate": {"alpha": 0.1, "logit_adjustment_tau": 0}})
    assert ran_stages(dvc(project, "repro")) == ["check_params", "evaluate"]  # the check: on every params edit
    comparison = json.loads((project / "metrics/comparison.json").read_text())
    assert comparison["alpha"] == 0.1 and set(comparison) == {"alpha", "weighted_vs_unweighted"}
    assert json.loads((project / "metrics/logit_adjusted.json").read_text()) == {}
    assert sorted(p.name for p in (project / "metrics/details").iterdir()) == [
        "comparison.json", "machine.json", "unweighted.json", "weighted.json"]
    assert "logit-adjusted (τ" not in (project / "reports/summary.md").read_text()


def test_a_tuned_tau_reruns_only_evaluate_and_is_chosen_on_the_validation_predictions(project):
    set_params(project, {"evaluate": {"logit_adjustment_tau": "tuned", "logit_adjustment_tau_grid": [0, 0.5, 1, 2, 4]}})
    result = dvc(project, "repro")
    assert ran_stages(result) == ["check_params", "evaluate"]  # no training
    headline = json.loads((project / "metrics/logit_adjusted.json").read_text())
    details = json.loads((project / "metrics/details/logit_adjusted.json").read_text())
    chosen = headline["tuned_tau"]
    assert set(chosen) == {"0", "1"} and details["tuned_tau"] == chosen
    assert (f"evaluate: τ tuned on validation, per seed: 0 {chosen['0']:g}, 1 {chosen['1']:g} "
            "(metrics/logit_adjusted.json)") in result.stdout

    # the choice again, independently: Keras' predictions on the validation split, scikit-learn's score
    import keras

    splits = np.load(project / "data/splits.npz")
    counts = json.loads((project / "data/class_counts.json").read_text())
    prior = np.array([counts["train"][name] for name in counts["class_names"]], dtype=float)
    log_prior = np.log(prior / prior.sum())

    def adjusted(proba, tau):  # Menon et al.'s argmax_y log p_y − τ log π_y (p floored as evaluate does)
        return (np.log(np.clip(proba, 1e-12, None)) - tau * log_prior).argmax(axis=1)

    for seed, tau in chosen.items():
        model_dir = project / f"models/unweighted/seed_{seed}"
        val = keras.models.load_model(model_dir / "model.keras").predict(splits["x_val"], verbose=0)
        scores = [balanced_accuracy_score(splits["y_val"], adjusted(val, t)) for t in (0, 0.5, 1, 2, 4)]
        assert tau == [0, 0.5, 1, 2, 4][int(np.argmax(scores))]  # argmax: the first, smallest, best
        # and the test metrics are the test probabilities adjusted with that seed's τ
        test = np.load(model_dir / "test_proba.npz")["proba"]
        expected = balanced_accuracy_score(splits["y_test"], adjusted(test, tau))
        assert details["seeds"][seed]["balanced_accuracy"] == pytest.approx(expected, abs=1e-12)

    summary = (project / "reports/summary.md").read_text()
    assert "logit-adjusted (τ tuned on validation)" in summary
    assert f"chosen: seed 0 τ = {chosen['0']:g}, seed 1 τ = {chosen['1']:g}." in summary


def test_plots_show_renders_the_figures_offline_as_images(finished, tmp_path):
    project, _ = finished
    dvc(project, "plots", "show", "-o", str(tmp_path / "plots"))
    html = (tmp_path / "plots/index.html").read_text()
    assert "<script" not in html  # nothing to fetch from a CDN
    for name in ("per_class_recall", "confusion_matrices", "training_curves", "reliability_diagrams"):
        assert f'<img src="static/workspace_reports_{name}.png">' in html


def test_adding_a_seed_trains_only_that_seed(project):
    set_params(project, {"train": {"seeds": [0, 1, 2]}})
    assert ran_stages(dvc(project, "repro")) == ["check_params", "evaluate", "train_unweighted@2", "train_weighted@2"]
    metrics = json.loads((project / "metrics/details/weighted.json").read_text())
    assert set(metrics["seeds"]) == {"0", "1", "2"}
    seeds = metrics["seeds"]
    assert len({seeds[s]["loss"] for s in seeds}) == 3  # different seeds, different models
    set_params(project, {"train": {"seeds": [0, 1]}})  # back to the seeds that ran: all restored
    assert ran_stages(dvc(project, "repro")) == ["check_params", "evaluate"]
