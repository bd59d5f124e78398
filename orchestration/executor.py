"""The one engine: Dask, for `make repro JOBS=N`, `make sweep JOBS=N` and the same with
`CLUSTER=tcp://HOST:8786`. Locally a LocalCluster of N one-thread worker processes listening on
127.0.0.1 only; on a cluster the given scheduler. The task code is the same either way: a clean
copy of the workspace at a commit (git clone), with the workspace's uncommitted edits laid over it
locally, the commands of the DVC adapter run in it (`dvc repro` / `dvc exp run`), the copy removed.
Locally the copy uses the workspace's DVC cache, so what it trains (run cache included) is here at
once and an experiment's git ref is pushed back; on a cluster the copies restore from and push to
the shared remotes. Dask's scheduler balances the tasks over the workers and re-runs the task of
a worker that died on another one (`distributed.scheduler.allowed-failures` times); a task whose
own run fails is reported with its one-line error and not retried.

Cluster workers are started with this project's venv (`.venv/bin/dask worker tcp://HOST:8786`), so
that the task's `dvc` and `python` are the pinned ones; they need to reach `origin` and the
default DVC remote, nothing else of this checkout.
"""
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cloudpickle

from classweights.errors import UserError
from orchestration import experiments, plan
from orchestration.experiments import finished_training  # by value on the workers (engine())

CONNECT_TIMEOUT = "15s"
# What a cluster run needs from the commit; the cluster clones the commit, so edits not committed
# and pushed would silently not be run.
RUN_INPUTS = ("params.yaml", "dvc.yaml", "*.py", ".dvc/config")
SCRATCH = Path(".dvc/tmp/dask")  # local workers' copies: inside the project, ignored by git (.dvc/.gitignore)


@dataclass(frozen=True)
class Workspace:
    """What a task copies: git `source` at `commit`, `edits` ({path: bytes, or None: deleted})
    laid over it; `cache`: the DVC cache folder the copy uses (None: its own, fed by the remotes)."""
    source: str
    commit: str
    edits: dict = field(default_factory=dict)
    cache: str | None = None


# --- on the worker: these run in a Dask worker process, sent by value (a worker needs the venv's
# --- packages, not this checkout; see submit())

def _worker_env():
    """The worker's venv first on PATH: dvc.yaml's `python -m stages.…` must run there."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1"}


def _run(step, cwd, on_line):
    """Run one command, its output (stdout and stderr together) line by line to on_line; return
    (exit code, output)."""
    with subprocess.Popen(step, cwd=cwd, env=_worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as process:
        lines = []
        for line in process.stdout:
            lines.append(line)
            on_line(line)
    return process.returncode, "".join(lines)


def run_task(workspace, name, commands, topic):
    """Copy the workspace into this worker's scratch space, run `commands` (lists of arguments, from
    the DVC adapter; the worker's venv first on PATH) there one after another, remove the copy. Each
    finished training is sent to the driver as an event on `topic` as it ends.
    Returns {"name", "log", "failed"}: a failing command ends the task with its output as the log,
    not as an error, so that Dask never runs it again."""
    from distributed import get_worker

    worker = get_worker()
    clone = Path(worker.local_directory) / f"{name.replace(' ', '_')}-{uuid.uuid4().hex[:8]}"

    def on_line(line):
        finished = finished_training(line)
        if finished:
            worker.log_event(topic, {"task": name, "stage": finished[0], "how": finished[1]})

    # --shared: a local copy borrows the workspace's git objects (a commit only there is found)
    clone_step = ["git", "clone", "--quiet", "--no-checkout", *(["--shared"] if workspace.cache else []),
                  workspace.source, str(clone)]
    setup = [clone_step, ["git", "-C", str(clone), "checkout", "--quiet", workspace.commit]]
    log = ""
    try:
        for k, step in enumerate([*setup, *commands]):
            if k == len(setup):
                _lay_over(clone, workspace.edits)
            code, output = _run(step, clone if clone.exists() else None, on_line)
            log += output
            if code != 0:
                return {"name": name, "log": log, "failed": True}
        return {"name": name, "log": log, "failed": False}
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def _lay_over(folder, edits):
    for path, content in edits.items():
        target = folder / path
        if content is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)


# --- on the driver (this checkout)

def git(*args, fix=""):
    result = subprocess.run(["git", *args], capture_output=True)
    if result.returncode != 0:
        why = (result.stderr.decode(errors="replace").strip() or "no output").splitlines()[0]
        raise UserError(f"`git {' '.join(args)}` failed: {why}{'; ' + fix if fix else ''}")
    return result.stdout.decode(errors="replace")


def local_workspace():
    """This workspace as local tasks copy it: HEAD, the files changed since (staged or not, deleted
    included: compared with HEAD, not with git's index) and the untracked ones git does not ignore
    (a new code file need not be git-added first), its DVC cache."""
    changed = git("diff", "--name-only", "--no-renames", "-z", "HEAD").split("\0")
    untracked = git("ls-files", "-z", "--others", "--exclude-standard").split("\0")
    edits = {path: Path(path).read_bytes() if Path(path).exists() else None
             for path in filter(None, changed + untracked) if not Path(path).is_dir()}  # a nested repository: not ours
    return Workspace(str(Path.cwd()), git("rev-parse", "HEAD").strip(), edits, experiments.cache_dir())


def pushed_workspace():
    """The commit a cluster's workers clone from origin, after checking that the run's inputs are
    committed and the commit is on origin."""
    fix = "a cluster run needs a git remote 'origin' that the workers can clone"
    origin = git("remote", "get-url", "origin", fix=fix).strip()
    if Path(origin).exists():  # a path: the workers clone from their own working directory
        origin = str(Path(origin).resolve())
    commit = git("rev-parse", "HEAD", fix=fix).strip()
    edited = git("status", "--porcelain", "--", *RUN_INPUTS, fix=fix)
    if edited:
        raise UserError(f"{edited.splitlines()[0][3:]} has changes that are not committed; the cluster runs the "
                        "commit: commit and `git push` them first")
    git("fetch", "--quiet", "origin", fix=fix)
    if not git("branch", "--remotes", "--list", "origin/*", "--contains", commit, fix=fix):
        raise UserError(f"commit {commit[:7]} is not on origin; `git push` it first (the workers clone it from there)")
    return Workspace(origin, commit)


@contextmanager
def engine(cluster, jobs):
    """A Dask client: of the scheduler at `cluster`, or of a LocalCluster of `jobs` one-thread
    worker processes on 127.0.0.1 (closed on leaving). Prints where its dashboard is, if it has one."""
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # see submit()
    cloudpickle.register_pickle_by_value(experiments)
    if cluster:
        client, where = _connect(cluster), f"cluster {cluster}"
        workers = len(client.nthreads())
        print(f"{where}: {workers} worker(s){'; waiting for one to join' if not workers else ''}", flush=True)
        closing, dashboard = [client], bool(client.scheduler_info().get("services", {}).get("dashboard"))
    else:
        SCRATCH.mkdir(parents=True, exist_ok=True)
        # The scheduler (in this process) serves HTTP with or without bokeh, on 8787 or, when another
        # run holds that, on a free port (its warning about that says nothing a user must act on);
        # only bokeh makes it a dashboard worth naming.
        dashboard = importlib.util.find_spec("bokeh") is not None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            local = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                 local_directory=str(SCRATCH.resolve()), memory_limit=0, silence_logs=logging.ERROR)
        client = Client(local)
        closing = [client, local]
    if dashboard:
        print(f"Dask dashboard: {client.dashboard_link}", flush=True)
    try:
        yield client
    finally:
        for thing in closing:
            thing.close()


def _connect(address):
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as error:
        raise UserError(f"CLUSTER={address}: no Dask scheduler answers there ({str(error).splitlines()[0]}); "
                        "start one with `dask scheduler` and workers with `.venv/bin/dask worker ADDRESS` "
                        "(docs/scale-out.md)") from None


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


def submit(client, workspace, task, topic):
    """One task. Dask pickles a task graph by reference (the scheduler and the workers would need
    this checkout importable) unless that fails: a local function cannot be, so Dask sends it with
    cloudpickle, which sends this module's functions (and the DVC adapter's) by value."""
    def task_function(*args):
        return run_task(*args)

    commands = experiments.task_commands(task, shared_cache=workspace.cache)
    return client.submit(task_function, workspace, task.name, commands, topic,
                         key=f"{task.name}-{uuid.uuid4().hex[:8]}")


class Progress:
    """`  3 of 20 trainings done, 95 s: train_weighted@1 trained`, one line per training that
    finished, from the workers' events; a training a re-run task (its worker died) ends again is
    not counted twice."""

    def __init__(self, total):
        self.total, self.started, self.done = total, time.monotonic(), set()

    def __call__(self, event):
        _, message = event
        key = (message["task"], message["stage"])
        if key in self.done:
            return
        self.done.add(key)
        print(f"  {len(self.done)} of {self.total} trainings done, {time.monotonic() - self.started:.0f} s: "
              f"{message['stage']} {message['how']}", flush=True)


def run_all(client, workspace, tasks):
    """Run the plan's tasks (each task's `later` ones once it has ended), printing a line per
    finished training and one as each task ends; return (names of the tasks that failed,
    (trained, restored) trainings). A task's result is read and released at once, so a worker lost
    later is no reason for Dask to run a finished task again."""
    from distributed import as_completed

    everything = plan.all_tasks(tasks)
    if not everything:
        return [], (0, 0)
    topic = f"classweights-trainings-{uuid.uuid4().hex[:8]}"  # this run's events only, on a shared scheduler
    client.subscribe_topic(topic, Progress(sum(task.trainings for task in everything)))
    waiting, running = {}, as_completed()  # waiting: {future key: its task}

    def start(task):
        future = submit(client, workspace, task, topic)
        running.add(future)
        waiting[future.key] = task

    for task in tasks:
        start(task)
    failed, trained, restored = [], 0, 0
    try:
        for done, future in enumerate(running, start=1):
            task = waiting.pop(future.key)
            result = future.result() if future.status == "finished" else None
            if result:  # a failed share of trainings (--keep-going) may have finished some
                ran, cached = experiments.count_trainings(result["log"])
                trained, restored = trained + ran, restored + cached
            if result and not result["failed"]:
                print(f"[{done}/{len(everything)}] done {task.name}: {ran} trained, {cached} restored from the run "
                      "cache", flush=True)
            else:
                failed.append(task.name)
                why = experiments.last_line(result["log"]) if result else failure_line(future)
                print(f"FAILED {task.name}: {why}", file=sys.stderr, flush=True)
            future.release()
            for later in plan.after(task, failed=task.name in failed):  # started even if this one failed
                start(later)
    except KeyboardInterrupt:
        raise UserError("interrupted; what finished is kept: run the same make command again") from None
    finally:
        client.unsubscribe_topic(topic)
    return failed, (trained, restored)
