"""`make sweep CLUSTER=tcp://HOST:8786` and `make repro CLUSTER=…`: runs on a Dask cluster.

One Dask task per grid point (or per (arm, seed) training): a clean clone of the git remote
`origin` at this checkout's commit in the worker's scratch directory, `dvc exp run -S …` (or
`dvc repro TRAINING`), then `dvc exp push` / `dvc push --run-cache` to the shared remotes
(points that share an unweighted arm train it once: group_jobs).
This checkout then pulls what finished and draws the map, or restores the trainings from the
shared run cache (`dvc repro --pull`) as a local `make repro` does from its own. Dask's
scheduler does the rest: it balances the tasks over the workers and re-runs the task of a
worker that died on another one (`distributed.scheduler.allowed-failures` times); a task whose
own run fails is reported with its one-line error and not retried.

Workers are started with this project's venv (`.venv/bin/dask worker tcp://HOST:8786`), so
that the task's `dvc` and `python` are the pinned ones; they need to reach `origin` and the
default DVC remote, nothing else of this checkout.
"""
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import cloudpickle

from classweights.errors import UserError
from orchestration import experiments
from orchestration.repro import serial_repro, trainings_to_run

CONNECT_TIMEOUT = "15s"
# What a run needs from the commit; the cluster clones the commit, so edits not committed and
# pushed would silently not be run.
RUN_INPUTS = ("params.yaml", "dvc.yaml", "*.py", ".dvc/config")


# --- on the worker: these run in a Dask worker process, sent by value (a worker needs the
# --- venv's packages, not this checkout; see submit())

def _worker_env():
    """The worker's venv first on PATH: dvc.yaml's `python -m stages.…` must run there."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1"}


def run_task(origin, commit, name, commands):
    """Clone origin at commit into this worker's scratch space, run `commands` (lists of
    arguments, from the DVC adapter; the worker venv comes first on PATH, so its dvc runs them)
    there one after another, remove the clone.
    Returns {"name", "log", "failed"}: a failing command ends the task with its output as the
    log, not as an error, so that Dask never runs it again."""
    from distributed import get_worker

    clone = Path(get_worker().local_directory) / f"{name}-{uuid.uuid4().hex[:8]}"
    steps = [["git", "clone", "--quiet", "--no-checkout", origin, str(clone)],
             ["git", "-C", str(clone), "checkout", "--quiet", commit], *commands]
    log = ""
    try:
        for step in steps:
            result = subprocess.run(step, cwd=clone if clone.exists() else None, env=_worker_env(),
                                    capture_output=True, text=True)
            log += result.stdout + result.stderr
            if result.returncode != 0:
                return {"name": name, "log": log, "failed": True}
        return {"name": name, "log": log, "failed": False}
    finally:
        shutil.rmtree(clone, ignore_errors=True)


# --- on the driver (this checkout)

def connect(address):
    """A Dask client of the scheduler at address; one line if none answers."""
    from distributed import Client

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # see submit()
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as error:
        raise UserError(f"CLUSTER={address}: no Dask scheduler answers there ({str(error).splitlines()[0]}); "
                        "start one with `dask scheduler` and workers with `.venv/bin/dask worker ADDRESS` "
                        "(docs/scale-out.md)") from None
    workers = len(client.nthreads())
    print(f"cluster {address}: {workers} worker(s){'; waiting for one to join' if not workers else ''}", flush=True)
    return client


def pushed_commit():
    """(origin URL, HEAD commit), after checking that the run's inputs are committed and the
    commit is on origin: the workers clone it from there."""
    def git(*args):
        result = subprocess.run(["git", *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise UserError(f"`git {' '.join(args)}` failed: {(result.stderr.strip() or 'no output').splitlines()[0]}; "
                            "a cluster run needs a git remote 'origin' that the workers can clone")
        return result.stdout.strip()

    origin = git("remote", "get-url", "origin")
    if Path(origin).exists():  # a path: the workers clone from their own working directory
        origin = str(Path(origin).resolve())
    commit = git("rev-parse", "HEAD")
    edited = git("status", "--porcelain", "--", *RUN_INPUTS)
    if edited:
        raise UserError(f"{edited.splitlines()[0][3:]} has changes that are not committed; the cluster runs the "
                        "commit: commit and `git push` them first")
    git("fetch", "--quiet", "origin")
    if not git("branch", "--remotes", "--contains", commit):
        raise UserError(f"commit {commit[:7]} is not on origin; `git push` it first (the workers clone it from there)")
    return origin, commit


def failure_line(future):
    """One line for a task Dask gave up on: how its workers were lost (after
    distributed.scheduler.allowed-failures lost workers), or the error."""
    from distributed import KilledWorker

    if future.status == "cancelled":
        return "cancelled by the scheduler (was it restarted?); run the same make command again"
    error = future.exception()
    if isinstance(error, KilledWorker):
        return ("every worker that ran it died (distributed.scheduler.allowed-failures); look for a worker "
                "killed by the out-of-memory killer or its machine going down")
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def submit(client, origin, commit, name, commands):
    """One task on the cluster. Dask pickles a task graph by reference (the scheduler and the
    workers would need this checkout importable) unless that fails: a local function cannot be,
    so Dask sends it with cloudpickle, which sends this module's functions by value."""
    def task(*args):
        return run_task(*args)

    return client.submit(task, origin, commit, name, commands, key=f"{name}-{uuid.uuid4().hex[:8]}")


def run_all(client, origin, commit, jobs):
    """Run jobs = [(name, commands, later jobs that wait for this one)] on the cluster, printing
    one line as each ends; return the names of those that failed. A task's result is read and
    released at once, so a worker lost later is no reason for Dask to run a finished task again."""
    from distributed import as_completed

    total = sum(1 + len(later) for _, _, later in jobs)
    waiting = {}
    running = as_completed()
    for name, commands, later in jobs:
        running.add(submit(client, origin, commit, name, commands))
        waiting[name] = later
    failed = []
    for done, future in enumerate(running, start=1):
        result = future.result() if future.status == "finished" else None
        name = result["name"] if result else next(n for n in waiting if future.key.startswith(f"{n}-"))
        if result and not result["failed"]:
            trained, restored = experiments.count_trainings(result["log"])
            print(f"[{done}/{total}] done {name}: {trained} trained, {restored} restored from the run cache",
                  flush=True)
        else:
            failed.append(name)
            why = experiments.last_line(result["log"]) if result else failure_line(future)
            print(f"FAILED {name}: {why}", file=sys.stderr, flush=True)
        future.release()
        for later_name, commands in waiting.pop(name):  # started even if this one failed
            running.add(submit(client, origin, commit, later_name, commands))
            waiting[later_name] = []
    return failed


def run_sweep(path, address):
    """Every grid point without a finished experiment (here or on the remotes) as one task;
    then pull what finished and draw the map."""
    from orchestration import sweep  # with the map's SciPy and scikit-learn: ~2 s that `make repro CLUSTER=…` skips

    fixed, points = sweep.read_sweep(path)
    origin, commit = pushed_commit()
    with connect(address) as client:
        experiments.fetch_all()  # points finished anywhere are on the remotes
        matched = sweep.match_points(sweep.read_base(), fixed, points, sweep.finished_experiments())
        done = {sweep.point_label(record["point"]) for record in matched}
        missing = [p for p in sweep.queue_order(points) if sweep.point_label(p) not in done]
        print(f"sweep {path}: {len(points)} grid point{'s' * (len(points) != 1)}, "
              f"{len(points) - len(missing)} already done; "
              f"sending {len(missing)} to the cluster", flush=True)
        groups = {}
        for point in missing:
            groups.setdefault(sweep.unweighted_group(point), []).append(point)
        # arm tasks pay off when every point of the groups can then run at once
        arm_tasks = sum(client.nthreads().values()) >= sum(len(g) for g in groups.values() if len(g) > 1)
        failed = run_all(client, origin, commit, [job for group_points in groups.values()
                                                  for job in group_jobs(fixed, group_points, arm_tasks)])
    sweep.collect(path, pull=True)
    failed_points = set(failed) & {sweep.point_name(point) for point in missing}  # not an arm's task alone
    if failed_points:
        raise UserError(f"{len(failed_points)} grid point(s) failed (above); run `make sweep CLUSTER=…` again to "
                        "retry only those")


def group_jobs(fixed, points, arm_task):
    """run_all's jobs for the missing points that share an unweighted arm. Each point is a task:
    the first trains the arm and the others restore it from the remote run cache (`--pull`)
    once that point has ended. With arm_task (workers enough to run every such point at once),
    a task of its own trains the arm and then all the points run side by side, so the longest
    chain is the arm plus one point, not two points. It costs a task more (a clone, the first
    stages again, the pushes), so not when the workers would be busy anyway (docs/scale-out.md)."""
    from orchestration import sweep

    names = [sweep.point_name(point) for point in points]
    tasks = [(name, experiments.point_task_commands(name, sweep.set_options({**fixed, **point})))
             for name, point in zip(names, points)]
    if not arm_task or len(tasks) == 1:  # a lone point trains its arm itself
        return [(*tasks[0], tasks[1:])]
    arm = experiments.unweighted_task_commands(sweep.set_options({**fixed, **points[0]}))
    return [(f"unweighted arm of {names[0]}", arm, tasks)]


def run_repro(address):
    """`dvc repro` with every (arm, seed) training to run as one cluster task; then restore
    them from the run cache and evaluate here, as `make repro JOBS=N` does."""
    origin, commit = pushed_commit()
    with connect(address) as client:
        code = experiments.repro("compute_weights")
        if code:  # the failing stage has said why
            return code
        changed = trainings_to_run()[0]
        print(f"training {len(changed)} (arm, seed) pairs on the cluster", flush=True)
        jobs = [(name, experiments.training_task_commands(name), []) for name in changed]
        failed = run_all(client, origin, commit, jobs)
    if failed:
        raise UserError("a training failed (above); finished trainings are kept on the remote: "
                        "run `make repro CLUSTER=…` again")
    # --pull: DVC fetches the run records from the remote and, for each training it restores,
    # that run's outputs (`dvc pull --run-cache` alone would fetch the records only)
    return serial_repro("--pull")
