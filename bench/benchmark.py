"""`make bench`: the speed and memory goals, each measured side by side in one run.

1. Every stage's peak resident memory, and fetch + preprocess wall time, on the full-size data.
2. A default `dvc repro`: the share of wall time that is not model.fit, the time
   of a no-op `dvc repro`, and which stages a one-key edit re-runs.
3. Training throughput: the notebook's loop and the project's (float32 and mixed bfloat16),
   same network, data and cores, taking turns seed by seed; median seconds per epoch (each
   run's first epoch left out: it traces the graph) and final test accuracy of each.
Prints a table and writes the numbers to bench/results/benchmark.json.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from classweights.machine import describe
from tools.sandbox import ROOT, dvc, env, make_project, merged, ran_stages, set_params, shipped_params

FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
PRECISIONS = ("project float32", "project mixed_bfloat16")  # train.precision, both measured
# The seconds at the end of every per-epoch line a training prints (`train_weighted@3  epoch 4/10
# ...  5.2 s`): their sum is the time spent in model.fit, read from the run's own output.
EPOCH_SECONDS = re.compile(r"^train_\S+  epoch \d+/\d+  .*  ([\d.]+) s$", re.M)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=FASHION_DIR, help="folder of the four Fashion-MNIST .gz files")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3, help="training runs of each loop")
    parser.add_argument("--out", default=str(ROOT / "bench/results/benchmark.json"))
    parser.add_argument("--tiny", action="store_true",
                        help="a quick check that every measurement runs: mnist-sample, tiny settings")
    return parser.parse_args()


def data_params(args):
    if args.tiny:
        return {"data": {"source": "mnist-sample"}, "imbalance": {"profile": "step", "ratio": 5, "n_max": 40}}
    if not Path(args.data_dir, "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"error: no Fashion-MNIST in {args.data_dir}; install Debian's dataset-fashion-mnist "
                 "or pass --data-dir (or --tiny for a quick check)")
    return {"data": {"source": "fashion-mnist", "path": args.data_dir}, "imbalance": {"profile": "none"}}


def training_throughput(params, args):
    # TensorFlow is imported only here, after the stage memory was measured: Linux counts a
    # child's peak memory from the parent it was forked from, so the parent must stay small.
    import keras

    from classweights.model import predict_proba, train_model

    class EpochTimer(keras.callbacks.Callback):
        """Records each epoch's wall seconds."""

        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    from bench.notebook_loop import notebook_test_accuracy, train_notebook
    from classweights.datasets import load_source
    from classweights.imbalance import make_splits

    p = shipped_params(merged(params, {"train": {"epochs": args.epochs}}))
    raw, _ = load_source(p.data)
    splits = make_splits(raw, p.imbalance, p.split)
    shipped = p.train.precision  # what `dvc repro` trains with
    loops = {name: {"epoch_s": [], "test_accuracy": []} for name in ["notebook", *PRECISIONS]}
    for seed in range(args.seeds):
        names = list(loops)
        for loop in names[seed % len(names):] + names[:seed % len(names)]:  # rotate who goes first
            timer = EpochTimer()
            if loop == "notebook":
                model, _ = train_notebook(splits, args.epochs, seed, callbacks=[timer])
                accuracy = notebook_test_accuracy(model, splits)
            else:
                train = p.train.model_copy(update={"precision": loop.removeprefix("project ")})
                model, _ = train_model(splits, train, seed, callbacks=[timer])
                accuracy = float(np.mean(predict_proba(model, splits["x_test"]).argmax(axis=1) == splits["y_test"]))
            loops[loop]["epoch_s"].extend(timer.seconds[1:])
            loops[loop]["test_accuracy"].append(accuracy)
            print(f"  {loop:24s} seed {seed}: {statistics.median(timer.seconds[1:]):.2f} s/epoch, "
                  f"test accuracy {accuracy:.4f}", flush=True)
    for loop in loops.values():
        loop["median_epoch_s"] = statistics.median(loop["epoch_s"])
        loop["images_per_s"] = len(splits["y_train"]) / loop["median_epoch_s"]
        loop["accuracy_mean"] = float(np.mean(loop["test_accuracy"]))
        loop["accuracy_sd"] = float(np.std(loop["test_accuracy"], ddof=1)) if args.seeds > 1 else 0.0
    nb = loops["notebook"]
    for loop in PRECISIONS:
        loops[loop]["speedup"] = nb["median_epoch_s"] / loops[loop]["median_epoch_s"]
        # "within the notebook's seed-to-seed spread": the means differ by at most two of its sds
        loops[loop]["accuracy_within_spread"] = \
            abs(loops[loop]["accuracy_mean"] - nb["accuracy_mean"]) <= 2 * max(nb["accuracy_sd"], 1e-9)
    ours = loops[f"project {shipped}"]
    return {"training_images": len(splits["y_train"]), "epochs": args.epochs, "seeds": args.seeds,
            "shipped_precision": shipped, **loops,
            "speedup": ours["speedup"], "accuracy_within_spread": ours["accuracy_within_spread"]}


def run_measured(project, command):
    """Run a stage command; return (wall seconds, peak resident MiB) of that process alone."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=project, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command} failed: {process.stderr.read().decode()}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024  # Linux reports KiB


def stage_memory(params, workdir):
    project = make_project(workdir / "memory", merged(params, {"train": {"seeds": [0], "epochs": 1}}))
    python = [sys.executable, "-m"]
    commands = {
        "fetch": python + ["stages.fetch"], "preprocess": python + ["stages.preprocess"],
        "compute_weights": python + ["stages.compute_weights"],
        "train_unweighted@0": python + ["stages.train", "--arm", "unweighted", "--seed", "0"],
        "train_weighted@0": python + ["stages.train", "--arm", "weighted", "--seed", "0"],
        "evaluate": python + ["stages.evaluate"],
    }
    stages = {}
    for name, command in commands.items():
        seconds, mib = run_measured(project, command)
        stages[name] = {"wall_s": seconds, "peak_rss_mib": mib}
        print(f"  {name:20s} {seconds:6.2f} s  peak RSS {mib:7.1f} MiB", flush=True)
    return {"stages": stages, "max_peak_rss_mib": max(s["peak_rss_mib"] for s in stages.values()),
            "fetch_plus_preprocess_s": stages["fetch"]["wall_s"] + stages["preprocess"]["wall_s"]}


def default_repro(workdir, tiny):
    overrides = {"imbalance": {"n_max": 40}, "train": {"seeds": [0], "epochs": 1}} if tiny else {}
    project = make_project(workdir / "default", overrides)
    started = time.perf_counter()
    first = dvc(project, "repro")
    wall = time.perf_counter() - started
    compute = sum(float(seconds) for seconds in EPOCH_SECONDS.findall(first.stdout))
    started = time.perf_counter()
    noop = dvc(project, "repro")
    noop_s = time.perf_counter() - started
    set_params(project, {"evaluate": {"alpha": 0.01}})
    started = time.perf_counter()
    edited = dvc(project, "repro")
    edit_s = time.perf_counter() - started
    result = {"stages_run": len(ran_stages(first)), "wall_s": wall, "fit_s": compute,
              "overhead_share": 1 - compute / wall, "noop_repro_s": noop_s, "noop_stages_run": ran_stages(noop),
              "evaluate_alpha_edit_s": edit_s, "evaluate_alpha_edit_stages_run": ran_stages(edited)}
    print(f"  {result['stages_run']} stages in {wall:.1f} s, fit {compute:.1f} s: overhead "
          f"{result['overhead_share']:.1%}; no-op repro {noop_s:.2f} s; alpha edit re-ran "
          f"{result['evaluate_alpha_edit_stages_run']} in {edit_s:.2f} s", flush=True)
    return result


def main():
    args = parse_args()
    if args.tiny:
        args.epochs, args.seeds = 2, 1  # the first epoch is not timed: two at least
    params = data_params(args)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": describe(shipped_params().train.threads), "tiny": args.tiny}
    print(f"benchmark on {results['machine']['cpu']} ({results['machine']['cores']} cores)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        print("1. every stage on the full-size data (1 epoch)", flush=True)
        results["memory"] = stage_memory(params, Path(tmp))
        print("2. default dvc repro", flush=True)
        results["default_repro"] = default_repro(Path(tmp), args.tiny)
    print("3. training throughput, notebook loop vs project loop", flush=True)
    results["training"] = training_throughput(params, args)
    t, m, r = results["training"], results["memory"], results["default_repro"]
    results["goals"] = {
        "training_speedup >= 2.0": t["speedup"] >= 2.0,
        "accuracy within the notebook's seed spread": t["accuracy_within_spread"],
        "overhead share <= 20%": r["overhead_share"] <= 0.20,
        "no-op repro <= 3 s": r["noop_repro_s"] <= 3.0 and r["noop_stages_run"] == [],
        "alpha edit re-runs only evaluate (and the params check)":
            r["evaluate_alpha_edit_stages_run"] == ["check_params", "evaluate"],
        "every stage's peak RSS <= 1.5 GB": m["max_peak_rss_mib"] * 2**20 <= 1.5e9,
        "fetch + preprocess <= 5 s": m["fetch_plus_preprocess_s"] <= 5.0,
    }
    nb = t["notebook"]
    print(f"\nper-epoch median: notebook {nb['median_epoch_s']:.2f} s, test accuracy "
          f"{nb['accuracy_mean']:.4f} ± {nb['accuracy_sd']:.4f} ({args.seeds} seeds)")
    for loop in PRECISIONS:
        print(f"per-epoch median: {loop} {t[loop]['median_epoch_s']:.2f} s -> speed-up {t[loop]['speedup']:.2f}x, "
              f"test accuracy {t[loop]['accuracy_mean']:.4f} ± {t[loop]['accuracy_sd']:.4f}")
    print(f"params.yaml trains with train.precision: {t['shipped_precision']}")
    print_goals_and_save(results, args.out)


def print_goals_and_save(results, out):
    for goal, met in results["goals"].items():
        print(f"  {'met ' if met else 'MISSED'}  {goal}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
