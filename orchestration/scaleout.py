"""`make repro [JOBS=N] [CLUSTER=…]`, `make restore` and `make sweep [SWEEP=…] [SHARD=k/N] [JOBS=N]
[CLUSTER=…]`: read forward, plan (orchestration.plan) → executor (orchestration.executor: Dask,
local or a cluster) → report (a final `dvc repro`, or the sweep's map). Finished trainings are
shared through DVC's run cache, locally its cache, on a cluster its remotes.

Every argument is checked here, before anything runs (one line on a bad value)."""
import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

from classweights import machine
from classweights.errors import UserError
from classweights.params import load_params, parse_params
from classweights.paths import MACHINE
from orchestration import executor, experiments, plan


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


def warn(*lines):
    for line in filter(None, lines):
        print(line, file=sys.stderr, flush=True)


def where(cluster, jobs):
    return "the cluster" if cluster else f"{jobs} local worker{'s' * (jobs != 1)}"


def repro(jobs, cluster=""):
    """`dvc repro` with the trainings on `jobs` local workers or the cluster. The cheap upstream
    stages run here first; the (arm, seed) trainings are tasks (plan.training_tasks); a final `dvc repro` restores every
    training from the run cache and runs evaluate, so dvc.lock and the metrics are those a serial
    `dvc repro` writes. A failing stage shows its own error line and DVC's."""
    params = load_params()
    kind = machine_kind_warning()
    if kind:  # on stdout, first: it explains everything the run prints after it
        print(kind, flush=True)
    warn(plan.few_seeds_warning(params), plan.oversubscription_warning(jobs if not cluster else 1,
                                                                       params.train.threads))
    if jobs == 1 and not cluster:
        return experiments.serial_repro(forget_unrestorable=plan.trainings_to_run(experiments.changed_stages())[1])
    workspace = executor.pushed_workspace() if cluster else None
    code = experiments.repro("compute_weights", "frozen_features")  # every stage upstream of the trainings
    if code:  # the failing stage has said why
        return code
    changed, unrestorable = plan.trainings_to_run(experiments.changed_stages())
    experiments.forget_lock_entries(unrestorable)
    tasks = plan.training_tasks(changed, shares=None if cluster else jobs)
    failed = []
    if tasks:
        workspace = workspace or executor.local_workspace()  # after the lock edits: the copies take them
        print(f"training {len(changed)} (arm, seed) pairs on {where(cluster, min(jobs, len(tasks)))}", flush=True)
        started = time.perf_counter()
        with executor.engine(cluster, min(jobs, len(tasks))) as client:
            failed, (trained, restored) = executor.run_all(client, workspace, tasks)
        print(f"(arm, seed) trainings: {trained} ran, {restored} restored from the run cache, in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    if failed:
        raise UserError(f"a training failed (above); finished trainings are kept{' on the remote' * bool(cluster)}: "
                        f"run `make repro{' CLUSTER=…' * bool(cluster)}` again")
    if tasks:
        print("restoring them", flush=True)
    # --pull: DVC fetches the run records from the remote and, for each training it restores,
    # that run's outputs (`dvc pull --run-cache` alone would fetch the records only)
    return experiments.serial_repro(*(["--pull"] if cluster else []))


def restore_committed_run():
    """`make restore`: back to the committed run after any experiment. params.yaml, dvc.lock and
    the outputs git tracks (metrics, reports, the small JSON files, the .gitignore files beside
    outputs) as committed; then `dvc repro` puts the rest back from DVC's caches (the models: cache
    and run cache). On the machine that made the committed run nothing runs and git status is clean."""
    executor.git("checkout", "HEAD", "--", "params.yaml", "dvc.lock")
    outputs = experiments.lock_outputs()
    # DVC adds an output of another seed to the .gitignore beside it and never takes it out again; that
    # file lies inside folders evaluate hashes (metrics/seconds/<arm>/), so it goes back as committed too
    beside = sorted({str(Path(path).parent / ".gitignore") for path in outputs})
    tracked = executor.git("ls-files", "--", *outputs, *beside).split()
    if tracked:
        executor.git("checkout", "HEAD", "--", *tracked)
    print("params.yaml, dvc.lock and the outputs git tracks: as committed; restoring the rest", flush=True)
    return experiments.serial_repro(forget_unrestorable=plan.trainings_to_run(experiments.changed_stages())[1])


def sweep(path, jobs, shard_spec, cluster=""):
    """Every grid point (of this shard) that has no finished experiment, here or (on a cluster)
    on the remotes, as a task; failures reported, the experiments shared when sharded, then the map."""
    from orchestration import sweep as sweep_file  # with the map's SciPy and scikit-learn: ~2 s `make repro` skips

    fixed, points = sweep_file.read_sweep(path)
    workspace = executor.pushed_workspace() if cluster else executor.local_workspace()
    index, count = shard_spec
    base = sweep_file.read_base()
    params = {sweep_file.point_name(p): parse_params(sweep_file.apply_overrides(base, {**fixed, **p}))
              for p in points}
    threads = {p.train.threads for p in params.values()}
    warn(next(filter(None, (plan.few_seeds_warning(p, str(path)) for p in params.values())), None),
         plan.oversubscription_warning(jobs if not cluster else 1, 0 if 0 in threads else 1))
    failed, (trained, restored) = [], (0, 0)
    with contextlib.ExitStack() as stack:
        # a cluster first: an unreachable scheduler is one line before anything else happens
        client = stack.enter_context(executor.engine(cluster, jobs)) if cluster else None
        if cluster:
            experiments.fetch_all()  # points finished anywhere are on the remotes
        matched = sweep_file.match_points(base, fixed, points, sweep_file.finished_experiments())
        points, missing = plan.missing_points(points, {sweep_file.point_label(r["point"]) for r in matched},
                                              shard_spec)
        print(f"sweep {path}: {len(points)} grid point{'s' * (len(points) != 1)}"
              f"{f' in shard {index}/{count}' if count > 1 else ''}, {len(points) - len(missing)} already done; "
              f"running {len(missing)} on {where(cluster, max(1, min(jobs, len(missing))))}", flush=True)
        if missing:
            client = client or stack.enter_context(executor.engine(cluster, min(jobs, len(missing))))
            seeds = {name: len(p.train.seeds) for name, p in params.items()}
            tasks = plan.sweep_tasks(fixed, missing, seeds, sum(client.nthreads().values()) or 1)
            failed, (trained, restored) = executor.run_all(client, workspace, tasks)
    failed_points = set(failed) & {sweep_file.point_name(p) for p in missing}  # not an arm's task alone
    print(f"sweep: {len(missing) - len(failed_points)} experiments finished, {len(failed_points)} failed; "
          f"(arm, seed) trainings: {trained} ran, {restored} restored from the run cache", flush=True)
    if count > 1:
        ours = [r["name"] for r in matched if r["point"] in points]
        ours += [sweep_file.point_name(p) for p in missing if sweep_file.point_name(p) not in failed_points]
        if ours:  # with no names, `dvc exp push` would push every experiment of HEAD
            experiments.share(ours)
        print(f"pushed {len(ours)} experiment{'s' * (len(ours) != 1)} of shard {index}/{count}; "
              "`make sweep-report` on any clone draws the map")
    sweep_file.collect(path, pull=bool(cluster))
    if failed_points:
        raise UserError(f"{len(failed_points)} grid point(s) failed (above); run `make sweep"
                        f"{' CLUSTER=…' * bool(cluster)}` again to retry only those")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("repro", help="dvc repro with the trainings on JOBS local Dask workers or a cluster")
    run.add_argument("--jobs", default="")
    run.add_argument("--cluster", default="")
    sub.add_parser("restore", help="back to the committed run, outputs restored from DVC's caches")
    run = sub.add_parser("sweep", help="run a sweep file's grid, one experiment per point")
    run.add_argument("sweep", nargs="?", default="sweep.yaml")
    run.add_argument("--jobs", default="")
    run.add_argument("--shard", default="")
    run.add_argument("--cluster", default="")
    args = parser.parse_args()
    if args.command == "restore":
        sys.exit(restore_committed_run())
    jobs, cluster = plan.parse_jobs(args.jobs), args.cluster.strip()
    if args.command == "repro":
        sys.exit(repro(jobs, cluster))
    sweep(args.sweep, jobs, plan.parse_shard(args.shard), cluster)


if __name__ == "__main__":
    from classweights.cli import run_stage

    run_stage(main)
