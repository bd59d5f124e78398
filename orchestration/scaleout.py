"""`make repro JOBS=N`, `make restore` and `make sweep [SWEEP=…] [SHARD=k/N]`: trainings side by side on
DVC's experiment queue, finished trainings shared through DVC's run cache and remotes.

Every argument is checked here, before anything is queued (one line on a bad value)."""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from orchestration import experiments
from orchestration.repro import serial_repro, trainings_to_run
from classweights import machine
from classweights.errors import UserError
from classweights.params import load_params, parse_params
from classweights.paths import MACHINE

HELPER_PREFIX = "repro-"  # the experiments make repro JOBS=N queues and removes again


def parse_jobs(text):
    """JOBS: a whole number >= 1 (empty: every core of this machine)."""
    if text.strip() == "":
        return os.cpu_count() or 1
    if not text.strip().isdigit() or int(text) < 1:
        raise UserError(f"JOBS={text}: must be a whole number >= 1 (trainings run side by side)")
    return int(text)


def parse_shard(text):
    """SHARD=k/N: this machine runs share k of N, 1 <= k <= N (empty: the whole sweep)."""
    if text.strip() == "":
        return 1, 1
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"SHARD={text}: must be k/N, e.g. SHARD=1/2 on one machine and SHARD=2/2 on another")
    index, count = (int(p) for p in parts)
    if not 1 <= index <= count:
        raise UserError(f"SHARD={text}: k must lie between 1 and N")
    return index, count


def oversubscription_warning(jobs, threads):
    """A warning when JOBS trainings side by side would each take every core (train.threads 0)."""
    if jobs > 1 and threads == 0:
        return (f"warning: train.threads is 0 (each training takes every core) and JOBS={jobs}: the {jobs} "
                "trainings compete for the cores; train.threads: 1 gives each its own core")
    return None


def machine_kind_warning(cwd="."):
    """The line `make repro` prints first when this machine is of another kind than the one
    that made the committed results (the record committed at HEAD), so that other numbers and a
    changed dvc.lock come as no surprise; None when of one kind or nothing is committed."""
    shown = subprocess.run(["git", "show", f"HEAD:{MACHINE.as_posix()}"], cwd=cwd, capture_output=True, text=True)
    try:
        committed = json.loads(shown.stdout) if shown.returncode == 0 else None
    except ValueError:
        committed = None
    if not isinstance(committed, dict):
        return None
    return machine.kind_warning(committed, machine.describe(load_params(Path(cwd) / "params.yaml").train.threads))


def fewest_seeds_for_a_verdict(alpha):
    """The fewest seeds whose smallest possible sign-flip p (classweights.statistics.sign_flip_p),
    2 / 2^n, lies below alpha: with fewer, no paired comparison can be called better or worse.
    Here, not in statistics.py, so that `make repro` warns without loading SciPy and scikit-learn."""
    n = 1
    while 2 / 2 ** n >= alpha:
        n += 1
    return n


def few_seeds_warning(params, where="params.yaml"):
    """A line when train.seeds are too few for any paired verdict to reach evaluate.alpha."""
    needed = fewest_seeds_for_a_verdict(params.evaluate.alpha)
    seeds = len(params.train.seeds)
    if seeds < needed:
        return (f"warning: {where}: {seeds} seed{'s' if seeds > 1 else ''} can never give a significant verdict "
                f"at alpha {params.evaluate.alpha} (the sign-flip test needs at least {needed}); the intervals "
                "still show the size of each difference")
    return None


def warn(*lines):
    for line in filter(None, lines):
        print(line, file=sys.stderr, flush=True)


def parallel_repro(jobs):
    """`dvc repro` with the trainings run by `jobs` queue workers.

    The cheap upstream stages run here first; each worker's experiment then runs a
    round-robin share of the (arm, seed) trainings; a final `dvc repro` restores every
    training from the run cache and runs evaluate, so dvc.lock and the metrics are those a
    serial `dvc repro` writes. A failing stage shows its own error line and DVC's."""
    params = load_params()
    kind = machine_kind_warning()
    if kind:  # on stdout, first: it explains everything the run prints after it
        print(kind, flush=True)
    warn(few_seeds_warning(params), oversubscription_warning(jobs, params.train.threads))
    if jobs == 1:
        return serial_repro()
    code = experiments.repro("compute_weights")
    if code:
        return code
    experiments.forget_failed(lambda name: name.startswith(HELPER_PREFIX))
    changed, unrestorable = trainings_to_run()
    experiments.forget_lock_entries(unrestorable)
    shares = [changed[k::jobs] for k in range(min(jobs, len(changed)))]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    names = [experiments.queue_experiment(f"{HELPER_PREFIX}{stamp}-{k + 1}", targets=share)
             for k, share in enumerate(shares)]
    if names:
        print(f"training {len(changed)} (arm, seed) pairs on {len(names)} queue workers", flush=True)
    started = time.perf_counter()
    states = experiments.run_queued(names, len(names), trainings=len(changed))
    finished = experiments.succeeded(states)
    if names:  # a re-run after a failure restores what the failed run finished (run cache)
        trained, restored = experiments.training_counts(finished)
        print(f"(arm, seed) trainings of the {len(finished)} finished workers: {trained} ran, {restored} restored "
              "from the run cache", flush=True)
    if experiments.report_failures(states):
        experiments.clear_queue_records(finished)
        raise UserError("a training failed (above); finished trainings are kept: run `make repro` again")
    if names:
        print(f"trainings done in {time.perf_counter() - started:.0f} s; restoring them", flush=True)
    code = serial_repro(forget_unrestorable=False)
    experiments.clear_queue_records(names)
    return code


def git(*args):
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode:
        raise UserError(f"`git {' '.join(args[:2])} …` failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def restore_committed_run():
    """`make restore`: back to the committed run after any experiment. params.yaml, dvc.lock and
    the outputs git tracks (metrics, reports, the small JSON files) as committed; then `dvc repro`
    puts the rest back from DVC's caches (the models: cache and run cache). On the machine that
    made the committed run nothing runs and git status is clean."""
    git("checkout", "HEAD", "--", "params.yaml", "dvc.lock")
    tracked = git("ls-files", "--", *experiments.lock_outputs()).split()
    if tracked:
        git("checkout", "HEAD", "--", *tracked)
    print("params.yaml, dvc.lock and the outputs git tracks: as committed; restoring the rest", flush=True)
    return serial_repro()


def run_sweep(path, jobs, shard_spec):
    """Queue every grid point (of this shard) that has no finished experiment, run them on
    `jobs` workers, report failures, share them when sharded, then draw the map."""
    from orchestration import sweep  # with the map's SciPy and scikit-learn: ~2 s that `make repro` skips

    fixed, points = sweep.read_sweep(path)
    index, count = shard_spec
    points = sweep.queue_order(points)
    if count > 1:
        points = sweep.shard(points, index, count)
    base = sweep.read_base()
    point_params = [parse_params(sweep.apply_overrides(base, {**fixed, **p})) for p in points]
    warn(next(filter(None, (few_seeds_warning(params, str(path)) for params in point_params)), None))
    trainings = {sweep.point_name(p): 2 * len(params.train.seeds) for p, params in zip(points, point_params)}
    matched = sweep.match_points(base, fixed, points, sweep.finished_experiments())
    done = {sweep.point_label(record["point"]) for record in matched}
    states = experiments.queue_states([sweep.point_name(p) for p in points])
    in_flight = [name for name, state in states.items() if state in experiments.ACTIVE]  # from an interrupted run
    missing = [p for p in points if sweep.point_label(p) not in done and sweep.point_name(p) not in in_flight]
    print(f"sweep {path}: {len(points)} grid point{'s' * (len(points) != 1)}"
          f"{f' in shard {index}/{count}' if count > 1 else ''}, "
          f"{len(points) - len(missing)} already done or running; queuing {len(missing)}", flush=True)
    # a failed point's record would stand for the point about to run again
    experiments.forget([sweep.point_name(p) for p in missing if states[sweep.point_name(p)] == "Failed"])
    states = {}
    for batch in sweep.batches(missing, jobs, trained={sweep.unweighted_group(r["point"]) for r in matched}):
        queued = [experiments.queue_experiment(sweep.point_name(p), sweep.set_options({**fixed, **p})) for p in batch]
        states.update(experiments.run_queued(queued + in_flight, jobs,
                                             trainings=sum(trainings[name] for name in queued + in_flight)))
        in_flight = []
    failed = experiments.report_failures(states)
    finished = experiments.succeeded(states)
    trained, restored = experiments.training_counts(finished)
    print(f"sweep: {len(finished)} experiments finished, {failed} failed; (arm, seed) trainings: "
          f"{trained} ran, {restored} restored from the run cache", flush=True)
    if count > 1:
        ours = [record["name"] for record in matched] + finished
        experiments.share(ours)
        print(f"pushed {len(ours)} experiment{'s' * (len(ours) != 1)} of shard {index}/{count}; "
              "`make sweep-report` on any clone draws the map")
    sweep.collect(path)
    if failed:
        raise UserError(f"{failed} grid point(s) failed (above); run `make sweep` again to retry only those")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    repro = sub.add_parser("repro", help="dvc repro with the trainings on JOBS queue workers")
    repro.add_argument("--jobs", default="")
    repro.add_argument("--cluster", default="")
    sub.add_parser("restore", help="back to the committed run, outputs restored from DVC's caches")
    run = sub.add_parser("sweep", help="run a sweep file's grid on the experiment queue")
    run.add_argument("sweep", nargs="?", default="sweep.yaml")
    run.add_argument("--jobs", default="")
    run.add_argument("--shard", default="")
    run.add_argument("--cluster", default="")
    args = parser.parse_args()
    if getattr(args, "cluster", "").strip():  # CLUSTER=tcp://HOST:8786: the tasks go to a Dask scheduler instead
        from orchestration import cluster

        sys.exit(cluster.run_repro(args.cluster) if args.command == "repro" else cluster.run_sweep(args.sweep, args.cluster))
    jobs = parse_jobs(getattr(args, "jobs", "1"))
    if args.command == "repro":
        sys.exit(parallel_repro(jobs))
    if args.command == "restore":
        sys.exit(restore_committed_run())
    run_sweep(args.sweep, jobs, parse_shard(args.shard))


if __name__ == "__main__":
    from classweights.cli import run_stage

    run_stage(main)
