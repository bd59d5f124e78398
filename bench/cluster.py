"""A small sweep on a Dask cluster of one worker and of two, side by side in one run
(`make sweep CLUSTER=…`; docs/scale-out.md).

Each variant starts from nothing: a fresh project, an empty git origin and DVC remote, a new
`dask scheduler` with 1 or 2 one-thread `dask worker` processes on 127.0.0.1. Measured: wall
time, the whole machine's CPU time, and whether the two maps (sweep.csv) are byte-identical.
The default sweep: 2 ratios x 2 strategies on mnist-sample, 2 seeds of 3 epochs. Measure on an
otherwise idle machine. Writes bench/results/cluster.json.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchmark import print_goals_and_save  # noqa: E402
from bench.throughput import GOAL_SPEEDUP, SWEEP, _busy  # noqa: E402
from tools.sandbox import LocalCluster, clone, commit, make_project, run, shared_origin  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a quick check that everything runs (40 images a "
                                                            "majority class, 1 epoch)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/cluster.json"))
    return parser.parse_args()


def on_cluster(workdir, workers, params):
    """The sweep through `orchestration.scaleout sweep --cluster` on a fresh cluster of `workers`."""
    tmp = workdir / f"workers-{workers}"
    tmp.mkdir()
    project = make_project(tmp / "seed", params)
    (project / "bench-sweep.yaml").write_text(yaml.safe_dump(SWEEP))
    commit(project, "bench sweep")
    shared_origin(tmp, project)
    driver = clone(tmp, "driver")
    (tmp / "dask").mkdir()
    cluster = LocalCluster(tmp / "dask", workers=workers)
    try:
        cpu, started = _busy(psutil.cpu_times()), time.perf_counter()
        run(driver, sys.executable, "-m", "orchestration.scaleout", "sweep", "bench-sweep.yaml", "--cluster",
            cluster.address, timeout=4 * 3600)
        wall, cpu = time.perf_counter() - started, _busy(psutil.cpu_times()) - cpu
    finally:
        cluster.close()
    print(f"  {workers} worker(s): {wall:7.1f} s wall, {cpu:7.1f} s CPU", flush=True)
    return {"wall_s": wall, "cpu_s": cpu}, (driver / "sweep/sweep.csv").read_bytes()


def main():
    args = parse_args()
    params = {"data": {"source": "mnist-sample"}, "imbalance": {"profile": "step"},
              "train": {"seeds": list(range(args.seeds)), "epochs": 1 if args.tiny else args.epochs}}
    if args.tiny:
        params["imbalance"]["n_max"] = 40
    results = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "tiny": args.tiny, "sweep": SWEEP,
               "params": params, "load_average_before": os.getloadavg()}
    print(f"a {len(SWEEP['grid']['imbalance.ratio']) * len(SWEEP['grid']['weights.strategy'])}-point sweep "
          "on a Dask cluster of 1 worker, then of 2", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        one, map_one = on_cluster(Path(tmp), 1, params)
        two, map_two = on_cluster(Path(tmp), 2, params)
    results.update({"workers_1": one, "workers_2": two, "speedup": one["wall_s"] / two["wall_s"],
                    "identical_sweep_csv": map_one == map_two, "load_average_after": os.getloadavg()})
    print(f"  speed-up {results['speedup']:.2f}x, sweep.csv identical: {'yes' if map_one == map_two else 'NO'}")
    results["goals"] = {f"2 workers vs 1: speed-up >= {GOAL_SPEEDUP}": results["speedup"] >= GOAL_SPEEDUP,
                        "the same map on 1 and 2 workers": results["identical_sweep_csv"]}
    print_goals_and_save(results, args.out)


if __name__ == "__main__":
    main()
