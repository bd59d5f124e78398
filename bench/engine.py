"""`make repro JOBS=2` against `JOBS=1`, and `dvc repro` with nothing to do against `dvc version`,
each pair interleaved 1-2-2-1 so that an hour's host speed cancels out of the ratio.

Every `make repro` runs in a fresh tools/sandbox copy with an empty cache (default: the shipped
params; --seeds/--epochs shrink it). The no-op pair runs in one copy after its `dvc repro`.
Measure only on a quiet host: the load average before and after is written beside the figures.
Writes bench/results/engine.json.

    python -m bench.engine                      # the shipped default, then the no-op pair
    python -m bench.engine --only noop          # the no-op pair alone (a tiny copy)
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throughput import _busy  # noqa: E402
from classweights.machine import describe  # noqa: E402
from tools.sandbox import BIN, TINY, dvc, link_venv, make, make_project, run  # noqa: E402

ORDER = (1, 2, 2, 1)  # JOBS of each run: interleaved, so a drift in host speed hits both alike


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, help="this many seeds instead of the shipped ones")
    parser.add_argument("--epochs", type=int, help="this many epochs instead of the shipped ones")
    parser.add_argument("--only", choices=("repro", "noop"), action="append", help="run only these parts")
    parser.add_argument("--noop-rounds", type=int, default=5, help="interleaved pairs of the no-op measurement")
    parser.add_argument("--out", default=str(ROOT / "bench/results/engine.json"))
    return parser.parse_args()


def timed(function):
    """(wall s, whole-machine CPU s) of function()."""
    cpu, started = _busy(psutil.cpu_times()), time.perf_counter()
    function()
    return time.perf_counter() - started, _busy(psutil.cpu_times()) - cpu


def repro_pair(workdir, overrides):
    """make repro JOBS=1 and JOBS=2 in ORDER, each in a fresh copy with an empty cache."""
    runs = {1: [], 2: []}
    for k, jobs in enumerate(ORDER):
        project = link_venv(make_project(workdir / f"repro-{k}-jobs{jobs}", overrides))
        wall, cpu = timed(lambda: make(project, "repro", f"JOBS={jobs}", timeout=7200))
        runs[jobs].append({"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)})
        print(f"  make repro JOBS={jobs}: {wall:7.1f} s wall, {cpu:7.1f} s CPU (load {os.getloadavg()[0]:.1f})",
              flush=True)
    mean = {jobs: statistics.fmean(r["wall_s"] for r in runs[jobs]) for jobs in runs}
    return {"runs": {f"jobs_{jobs}": r for jobs, r in runs.items()}, "speedup": round(mean[1] / mean[2], 3)}


def noop_pair(workdir, rounds):
    """`dvc repro` with nothing to do and `dvc version`, interleaved, in a tiny copy that has run."""
    project = make_project(workdir / "noop", TINY)
    dvc(project, "repro")
    times = {"dvc repro (nothing to do)": [], "dvc version": []}
    for _ in range(rounds):
        for name, args in (("dvc repro (nothing to do)", ["repro"]), ("dvc version", ["version"]),
                           ("dvc version", ["version"]), ("dvc repro (nothing to do)", ["repro"])):
            wall, _ = timed(lambda: run(project, str(BIN / "dvc"), *args))
            times[name].append(round(wall, 2))
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["dvc repro (nothing to do)"] / median["dvc version"]
    print(f"  dvc repro no-op {median['dvc repro (nothing to do)']:.2f} s, dvc version {median['dvc version']:.2f} s "
          f"(medians of {2 * rounds}): {ratio:.2f}x", flush=True)
    return {"seconds": times, "median_s": median, "ratio": round(ratio, 2)}


def main():
    args = parse_args()
    parts = args.only or ["repro", "noop"]
    train = {**({"seeds": list(range(args.seeds))} if args.seeds else {}),
             **({"epochs": args.epochs} if args.epochs else {})}
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": describe(1), "cores": os.cpu_count(),
               "order": ORDER, "train": train or "shipped", "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        if "repro" in parts:
            print(f"make repro JOBS=1 vs JOBS=2, interleaved {ORDER}", flush=True)
            results["repro"] = repro_pair(Path(tmp), {"train": train} if train else {})
        if "noop" in parts:
            print("dvc repro with nothing to do vs dvc version", flush=True)
            results["noop"] = noop_pair(Path(tmp), args.noop_rounds)
    results["load_average_after"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
