"""The benchmark runs at a tiny size and reports every field (no timing is asserted)."""
import json
import subprocess
import sys

from tools.sandbox import ROOT, env


def test_benchmark_runs_tiny_and_reports_every_field(subprocesses, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "bench.benchmark", "--tiny", "--out", str(out)], cwd=ROOT,
                            env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    training = report["training"]
    for loop in ("notebook", "project float32", "project mixed_bfloat16"):
        assert training[loop]["median_epoch_s"] > 0 and len(training[loop]["test_accuracy"]) == 1
        assert 0 <= training[loop]["accuracy_mean"] <= 1
    assert training["speedup"] > 0 and training["shipped_precision"] in ("float32", "mixed_bfloat16")
    assert training["project mixed_bfloat16"]["speedup"] > 0
    stages = report["memory"]["stages"]
    assert set(stages) == {"fetch", "preprocess", "compute_weights", "train_unweighted@0", "train_weighted@0",
                           "evaluate"}
    assert all(s["peak_rss_mib"] > 10 and s["wall_s"] > 0 for s in stages.values())
    # a fresh stage process is measured, not the benchmark's own memory
    assert stages["fetch"]["peak_rss_mib"] < stages["train_weighted@0"]["peak_rss_mib"]
    repro = report["default_repro"]
    assert 0 < repro["overhead_share"] < 1 and repro["fit_s"] > 0
    assert repro["noop_stages_run"] == [] and repro["evaluate_alpha_edit_stages_run"] == ["check_params", "evaluate"]
    assert len(report["goals"]) == 7 and all(isinstance(v, bool) for v in report["goals"].values())
    assert "speed-up" in result.stdout and report["machine"]["cores"] >= 1


def test_resnet_bench_counts_two_flops_per_multiply_add_of_each_convolution_and_dense_layer():
    import keras

    from bench.resnet import forward_flops

    inner = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3, padding="same"),
                              keras.layers.Conv2D(3, 3, strides=2, padding="same")])
    model = keras.Sequential([keras.Input((4, 4, 1)), inner, keras.layers.Flatten(), keras.layers.Dense(5)])
    # 3x3 kernels, 1 -> 2 channels on 4x4 outputs; 2 -> 3 channels on 2x2 (stride 2); Dense 12 -> 5
    assert forward_flops(model) == 2 * (4 * 4 * 9 * 1 * 2 + 2 * 2 * 9 * 2 * 3 + 12 * 5)


def test_the_frozen_features_bench_runs_tiny_and_reports_both_ways_side_by_side(subprocesses, tmp_path):
    out = tmp_path / "frozen.json"
    result = subprocess.run([sys.executable, "-m", "bench.frozen", "--tiny", "--epochs", "1", "--out", str(out)],
                            cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report["training_s"]) == {"backbone in every epoch", "cached features"}
    assert all(len(way["all"]) == 2 and way["min"] <= way["median"] <= way["max"]
               for way in report["training_s"].values())
    inline, cached = (report["training_s"][way]["median"] for way in ("backbone in every epoch", "cached features"))
    assert report["speedup_per_training"] == inline / cached and report["features_once_s"] > 0
    assert "a run of 20 trainings" in result.stdout
