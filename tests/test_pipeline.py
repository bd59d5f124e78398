"""End to end: the real dvc.yaml, real `dvc repro`, real (tiny) training. Tests run in order
and share one project: each checks what the previous edit re-ran."""
import json

import numpy as np
import pytest

from tests.pipeline_helpers import dvc, make_project, ran_stages, set_params

ALL_STAGES = sorted(["fetch", "preprocess", "compute_weights", "train_unweighted@0", "train_unweighted@1",
                     "train_weighted@0", "train_weighted@1", "evaluate"])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("pipeline"))
    first = dvc(project, "repro")
    return project, first


def test_first_repro_runs_every_stage_and_writes_every_output(project):
    project, first = project
    assert ran_stages(first) == ALL_STAGES
    for arm in ("unweighted", "weighted"):
        for seed in (0, 1):
            folder = project / "models" / arm / f"seed_{seed}"
            assert (folder / "model.keras").stat().st_size > 10_000
            assert (folder / "test_proba.npz").is_file() and (folder / "live" / "metrics.json").is_file()
    counts = json.loads((project / "metrics/class_counts.json").read_text())
    total = {c: counts["train"][c] + counts["val"][c] for c in counts["train"]}
    assert total == {str(c): 8 if c < 5 else 40 for c in range(10)}  # step: n_max 40, ratio 5
    assert counts["test"] == {str(c): 100 for c in range(10)} and counts["minority_classes"] == [0, 1, 2, 3, 4]
    weights = json.loads((project / "data/class_weights.json").read_text())
    assert weights["0"] > 1 > weights["9"]
    provenance = json.loads((project / "data/provenance.json").read_text())
    assert provenance["source"] == "mnist-sample" and provenance["counts"]["train"]["3"] == 400
    for png in ("per_class_recall.png", "confusion_matrices.png", "training_curves.png"):
        assert (project / "reports" / png).read_bytes()[:8] == PNG_MAGIC
    summary = (project / "reports/summary.md").read_text()
    assert summary.startswith("# Weighted vs unweighted") and "| minority_recall |" in summary
    assert "McNemar" in summary


def test_metrics_show_lists_both_arms_and_the_comparison(project):
    project, _ = project
    shown = json.loads(dvc(project, "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    for arm in ("unweighted", "weighted"):
        metrics = files[f"metrics/{arm}.json"]["data"]
        assert 0 <= metrics["mean"]["accuracy"] <= 1 and metrics["sd"]["minority_recall"] >= 0
        assert set(metrics["recall"]) == {str(c) for c in range(10)}
        details = json.loads((project / f"metrics/details/{arm}.json").read_text())
        assert set(details["seeds"]) == {"0", "1"}
        assert set(details["mean"]["per_class"]["4"]) == {"precision", "recall", "f1"}
        assert details["mean"]["accuracy"] == metrics["mean"]["accuracy"]
    comparison = files["metrics/comparison.json"]["data"]
    assert comparison["accuracy"]["verdict"] in ("better", "worse", "no significant difference")
    assert comparison["minority_recall"]["ci_low"] <= comparison["minority_recall"]["mean"]
    details = json.loads((project / "metrics/details/comparison.json").read_text())
    assert details["difference"]["balanced_accuracy"]["n_seeds"] == 2
    assert set(details["mcnemar"]) == {"0", "1"} and set(details["per_class_recall_difference"]) == set(metrics["recall"])


def test_second_repro_runs_nothing(project):
    project, _ = project
    again = dvc(project, "repro")
    assert ran_stages(again) == []
    assert "up to date" in again.stdout


def test_weights_edit_reruns_only_weights_the_weighted_arm_and_evaluate(project):
    project, _ = project
    before = {name: (project / name).read_bytes() for name in
              ("metrics/weighted.json", "metrics/unweighted.json", "reports/summary.md", "reports/per_class_recall.png")}
    set_params(project, {"weights": {"strategy": "sqrt_inverse"}})
    edited = dvc(project, "repro")
    assert ran_stages(edited) == ["compute_weights", "evaluate", "train_weighted@0", "train_weighted@1"]
    assert (project / "metrics/weighted.json").read_bytes() != before["metrics/weighted.json"]
    assert (project / "metrics/unweighted.json").read_bytes() == before["metrics/unweighted.json"]
    assert (project / "reports/summary.md").read_bytes() != before["reports/summary.md"]
    assert (project / "reports/per_class_recall.png").read_bytes() != before["reports/per_class_recall.png"]


def test_evaluate_edit_reruns_only_evaluate(project):
    project, _ = project
    set_params(project, {"evaluate": {"alpha": 0.1}})
    assert ran_stages(dvc(project, "repro")) == ["evaluate"]
    assert json.loads((project / "metrics/comparison.json").read_text())["alpha"] == 0.1


def test_adding_a_seed_trains_only_that_seed(project):
    project, _ = project
    set_params(project, {"train": {"seeds": [0, 1, 2]}})
    assert ran_stages(dvc(project, "repro")) == ["evaluate", "train_unweighted@2", "train_weighted@2"]
    metrics = json.loads((project / "metrics/details/weighted.json").read_text())
    assert set(metrics["seeds"]) == {"0", "1", "2"}
    seeds = metrics["seeds"]
    assert len({seeds[s]["loss"] for s in seeds}) == 3  # different seeds, different models


def test_forced_rerun_gives_byte_identical_metrics(project):
    project, _ = project
    outputs = ["metrics/unweighted.json", "metrics/weighted.json", "metrics/comparison.json",
               "metrics/details/weighted.json", "metrics/details/comparison.json",
               "metrics/class_counts.json", "data/class_weights.json", "reports/summary.md"]
    before = {name: (project / name).read_bytes() for name in outputs}
    probabilities = np.load(project / "models/weighted/seed_0/test_proba.npz")["proba"]
    forced = dvc(project, "repro", "-f")
    assert "train_weighted@2" in ran_stages(forced)
    for name in outputs:
        assert (project / name).read_bytes() == before[name], name
    assert np.array_equal(np.load(project / "models/weighted/seed_0/test_proba.npz")["proba"], probabilities)
