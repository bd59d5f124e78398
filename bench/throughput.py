"""`make bench`, part 2: trainings side by side, measured in one run (docs/scale-out.md).

1. The full-size default (Fashion-MNIST, step ratio 10, the shipped seeds and epochs) with
   `make repro JOBS=1` and `JOBS=2`, each from an empty cache: wall time, CPU time, and
   whether metrics/ is byte-identical; and a serial run with TensorFlow's default threads
   (train.threads: 0), so that the one-thread policy's own cost is visible.
2. The shipped small default (mnist-sample) the same way: JOBS=2 must not be slower.
3. A 4-point tiny sweep (2 ratios x 2 strategies, mnist-sample, 2 seeds, 1 epoch, 40 images
   a majority class) with -j 1 and -j 2: whole-pipeline experiments, the engine's own overhead.

CPU time is the whole machine's busy time during the run (psutil): the trainings run in Dask
worker processes' children (or a cluster's), which one process's child accounting does not
always see. Measure on an otherwise idle machine. Writes bench/results/throughput.json.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchmark import print_goals_and_save  # noqa: E402
from classweights.machine import describe  # noqa: E402
from tools.sandbox import env, make_project, merged  # noqa: E402

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
SWEEP = {"grid": {"imbalance.ratio": [2, 10], "weights.strategy": ["balanced", "sqrt_inverse"]}}
GOAL_SPEEDUP = 1.7


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=FASHION_DIR)
    parser.add_argument("--seeds", type=int, help="full-size run: this many seeds instead of the shipped ones")
    parser.add_argument("--epochs", type=int, help="full-size run: this many epochs instead of the shipped ones")
    parser.add_argument("--only", choices=("full", "sample", "sweep"), action="append",
                        help="run only these parts (repeatable); default all three")
    parser.add_argument("--tiny", action="store_true", help="a quick check that everything runs (tiny settings)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/throughput.json"))
    return parser.parse_args()


def _busy(times):
    return times.user + times.system + times.nice + getattr(times, "irq", 0) + getattr(times, "softirq", 0)


# Where a run's time goes: the first output line holding each mark, in seconds after the start.
# Serial: the stages before the trainings, the trainings, evaluate. JOBS=2: the stages before the
# trainings, the Dask workers' trainings, the final restore and evaluate.
PHASE_MARKS = {"first_training": "Running stage 'train_", "workers_started": " (arm, seed) pairs on ",
               "trainings_done": "(arm, seed) trainings: ", "evaluate": "Running stage 'evaluate'"}


def timed(project, *args):
    """Run `python -m orchestration.scaleout args` in project: (wall s, machine CPU s, phases:
    {mark: s after the start of the first line holding it})."""
    cpu, started = _busy(psutil.cpu_times()), time.perf_counter()
    lines = []
    with subprocess.Popen([sys.executable, "-m", "orchestration.scaleout", *args], cwd=project, env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            lines.append((time.perf_counter() - started, line))
    if process.returncode:
        sys.exit(f"error: {' '.join(args)} in {project} failed:\n{''.join(line for _, line in lines[-20:])}")
    phases = {key: next((round(t, 1) for t, line in lines if mark in line), None) for key, mark in PHASE_MARKS.items()}
    return time.perf_counter() - started, _busy(psutil.cpu_times()) - cpu, phases


def outputs(project, folder):
    return {str(p.relative_to(project)): p.read_bytes() for p in sorted((project / folder).rglob("*")) if p.is_file()}


def side_by_side(workdir, name, overrides, command, compared, sweep=None, default_threads=False):
    """The same run with 1 and 2 workers, each in a fresh copy with an empty cache; with
    default_threads also a serial run with TensorFlow's default threads (train.threads: 0),
    the way the pipeline trained before its one-thread policy."""
    variants = [("jobs_1_default_threads", 1, {"train": {"threads": 0}})] if default_threads else []
    variants += [("jobs_1", 1, {}), ("jobs_2", 2, {})]
    runs = {}
    for key, jobs, extra in variants:
        project = make_project(workdir / f"{name}-{key}", merged(overrides, extra))
        if sweep:
            (project / "bench-sweep.yaml").write_text(yaml.safe_dump(sweep))
        wall, cpu, phases = timed(project, *command, "--jobs", str(jobs))
        runs[key] = {"wall_s": wall, "cpu_s": cpu, "phases_s": phases, "files": outputs(project, compared)}
        print(f"  {name:24s} {key:22s}: {wall:7.1f} s wall, {cpu:7.1f} s CPU; phases began at (s) "
              f"{', '.join(f'{k} {v}' for k, v in phases.items() if v is not None)}", flush=True)
    files = {key: measured.pop("files") for key, measured in runs.items()}
    identical = files["jobs_1"] == files["jobs_2"]
    result = {**runs, "speedup": runs["jobs_1"]["wall_s"] / runs["jobs_2"]["wall_s"],
              f"identical_{compared.replace('/', '')}": identical}
    print(f"  {name:24s} speed-up {result['speedup']:.2f}x, {compared} identical: {'yes' if identical else 'NO'}")
    if default_threads:
        result["speedup_vs_default_threads"] = runs["jobs_1_default_threads"]["wall_s"] / runs["jobs_2"]["wall_s"]
        result["policy_cost"] = runs["jobs_1"]["wall_s"] / runs["jobs_1_default_threads"]["wall_s"]
        print(f"  {name:24s} JOBS=2 vs a serial run with TensorFlow's default threads: "
              f"{result['speedup_vs_default_threads']:.2f}x; serial one thread / serial default threads: "
              f"{result['policy_cost']:.2f}")
    return result


def full_size(args):
    if args.tiny:
        return {"data": {"source": "mnist-sample"}, "imbalance": {"n_max": 40}, "train": {"seeds": [0, 1], "epochs": 1}}
    if not Path(args.data_dir, "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"error: no Fashion-MNIST in {args.data_dir}; install Debian's dataset-fashion-mnist or pass --data-dir")
    train = {**({"seeds": list(range(args.seeds))} if args.seeds else {}),
             **({"epochs": args.epochs} if args.epochs else {})}
    return {"data": {"source": "fashion-mnist", "path": args.data_dir}, "train": train}


def main():
    args = parse_args()
    parts = args.only or ["full", "sample", "sweep"]
    tiny = {"imbalance": {"n_max": 40}, "train": {"epochs": 1}}
    small = tiny if args.tiny else {}
    sweep_params = {**tiny, "train": {"seeds": [0, 1], "epochs": 1}}
    results = {"date": time.strftime("%Y-%m-%d"), "machine": describe(1), "cores": os.cpu_count(), "tiny": args.tiny,
               "full_size_seeds": args.seeds, "full_size_epochs": args.epochs,
               "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if "full" in parts:
            print("1. the full-size default, make repro JOBS=1 vs JOBS=2", flush=True)
            results["full_size"] = side_by_side(workdir, "full-size", full_size(args), ["repro"], "metrics",
                                                 default_threads=True)
        if "sample" in parts:
            print("2. the shipped small default (mnist-sample)", flush=True)
            results["mnist_sample"] = side_by_side(workdir, "mnist-sample", small, ["repro"], "metrics")
        if "sweep" in parts:
            print("3. a 4-point sweep, -j 1 vs -j 2", flush=True)
            results["sweep"] = side_by_side(workdir, "sweep", sweep_params, ["sweep", "bench-sweep.yaml"], "sweep",
                                            sweep=SWEEP)
    goals = {}
    if "full_size" in results:
        goals[f"full-size JOBS=2 speed-up >= {GOAL_SPEEDUP}"] = results["full_size"]["speedup"] >= GOAL_SPEEDUP
        goals["full-size metrics identical across JOBS"] = results["full_size"]["identical_metrics"]
    if "sweep" in results:
        goals[f"sweep -j 2 speed-up >= {GOAL_SPEEDUP}"] = results["sweep"]["speedup"] >= GOAL_SPEEDUP
    if "mnist_sample" in results:
        goals["mnist-sample not slower with JOBS=2"] = results["mnist_sample"]["speedup"] >= 1.0
    results["goals"] = goals
    print_goals_and_save(results, args.out)


if __name__ == "__main__":
    main()
