"""The one place that talks to DVC: its command line (with --json where it has one) and
dvc.api, plus two internals where DVC has no public way, named and tested below (the queue's
task statuses, and editing dvc.lock). Queue experiments, start workers, wait with progress,
report failures, reproduce, share and fetch experiments."""
import functools
import json
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from classweights.errors import UserError

DVC = str(Path(sys.executable).parent / "dvc")  # the dvc of the venv this runs in
# Two ways DVC's queue shows a task as Running forever though no worker runs it:
STARTING = "Starting"  # no worker has begun to set it up: one took it off the queue and stopped
# (DVC's races among queue workers, treeverse/dvc#10673 and #8165)
ORPHANED = "Orphaned"  # its process has ended, but its worker died before recording that
ACTIVE = ("Queued", STARTING, ORPHANED, "Running")
# After this long in either state, `dvc queue kill` settles the task (mark_unattended). A live
# worker sets a task up within seconds (it writes the executor's info file first, however long
# the setup then takes) and records a process's end at once.
UNATTENDED_SECONDS = 60
# What such a task ends as, and the line that reports it. (DVC shows an ORPHANED task whose
# process finished as Success, but no worker collected its experiment; its stages are in the
# run cache, so running it again restores them.)
LOST, WORKER_DIED = "Lost", "Worker died"
SETTLED = {STARTING: LOST, ORPHANED: WORKER_DIED}
UNATTENDED_LINES = {LOST: "DVC's queue lost it: a queue worker took it and never ran it",
                    WORKER_DIED: "its queue worker died while it ran; what its stages finished is in the run cache"}
PUSH_HINT = "Use `dvc push` to send your updates to remote storage."
# DVC's advice after a repro that wrote its lock file, even one that changed no byte of it; held back
# and given again only when a file it names differs from what git has (git_add_advice).
GIT_ADVICE = "To track the changes with git, run:"
AUTOSTAGE_ADVICE = "dvc config core.autostage true"
# Seconds between reads of the queue's states and logs: in this process a read costs about 0.03 s
# of CPU. (A `dvc queue logs` process per running experiment every 10 s cost 1.2 s each: with two
# running, an eighth of this 2-core machine, taken from the trainings it watched.)
POLL_SECONDS = 2
# What a queue log says about one (arm, seed) training: the stage's own last line, or DVC's
# line for a stage it restored from the run cache instead of running it.
TRAINED = re.compile(r"^(train_\w+@\d+): saved", re.MULTILINE)
RESTORED = re.compile(r"Stage '(train_\w+@\d+)' (?:is cached|didn't change)")


def dvc(*args, fix=None):
    """Run `dvc args`; return its stdout. A failure shows DVC's own error, then one line
    of ours naming the command and, if given, what to fix."""
    result = subprocess.run([DVC, *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr or result.stdout)
        raise UserError(f"`dvc {' '.join(args)}` failed{'; ' + fix if fix else ''}")
    return result.stdout


def queue_experiment(name, set_options=(), targets=()):
    """Queue one experiment (`dvc exp run --queue`): it runs later in a temporary copy of
    the git-tracked files, with the workspace's uncommitted edits to them."""
    dvc("exp", "run", "--queue", "--name", name, *set_options, *targets)
    return name


def run_queued(names, jobs, trainings=0, unattended_after=UNATTENDED_SECONDS):
    """Start `jobs` workers (`dvc queue start -j`), wait until every named experiment has
    finished; return {name: "Success" | "Failed" | LOST | WORKER_DIED}. With `trainings` (how many
    (arm, seed) trainings the experiments hold) a line per finished training shows the progress.
    Ctrl-C stops the waiting, not the workers."""
    if not names:
        return {}
    start_workers(jobs)
    progress = TrainingProgress(trainings)
    unattended_since, settled = {}, {}
    try:
        while True:
            tasks, logs = _queue_tasks(logs_of=names if trainings else ())
            states = {name: tasks.get(name) for name in names}
            for name, log in logs.items():
                progress.report(name, log)
            now = time.monotonic()
            unattended_since = {name: unattended_since.get(name, now) for name in names
                                if states[name] in (STARTING, ORPHANED)}
            due = [name for name, since in unattended_since.items() if now - since >= unattended_after]
            settled.update((name, SETTLED[states[name]]) for name in mark_unattended(due))
            # `dvc queue kill` refused (a worker said it holds the task): ask again later
            unattended_since.update((name, now) for name in due if name not in settled)
            if not any(state in ACTIVE for name, state in states.items() if name not in settled):
                return {**states, **settled}
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        raise UserError("interrupted; the queued experiments keep running in the background (`dvc queue status`; "
                        "`dvc queue stop --kill` stops them); run the same make command again to wait for them "
                        "and queue only what is missing") from None


def mark_unattended(names):
    """The named tasks (STARTING or ORPHANED) that `dvc queue kill` settles. With no process to
    stop, it asks the live workers which tasks they hold, refuses one that a worker names, and
    marks the others failed."""
    return [name for name in names
            if subprocess.run([DVC, "queue", "kill", name], capture_output=True).returncode == 0]


def start_workers(jobs):
    """`dvc queue start --jobs N`, returning as soon as the workers are started. The workers
    outlive the command and keep its standard streams: read through pipes, the command would
    seem to last until they have finished, so its errors go to a file instead."""
    with tempfile.TemporaryFile("w+") as errors:
        code = subprocess.run([DVC, "queue", "start", "--jobs", str(jobs)], stdout=subprocess.DEVNULL,
                              stderr=errors).returncode
        if code != 0:
            errors.seek(0)
            sys.stderr.write(errors.read())
            raise UserError(f"`dvc queue start --jobs {jobs}` failed")


class TrainingProgress:
    """`  3 of 20 trainings done, 95 s: train_weighted@1 trained`, one line per training that
    finished, read from the experiments' queue logs (each read repeats what is already shown)."""

    def __init__(self, total):
        self.total, self.started, self.done = total, time.monotonic(), set()

    def report(self, name, log):
        finished = [(stage, "trained") for stage in TRAINED.findall(log)]
        finished += [(stage, "restored from the run cache") for stage in RESTORED.findall(log)]
        for stage, how in finished:
            if (name, stage) not in self.done:
                self.done.add((name, stage))
                print(f"  {len(self.done)} of {self.total} trainings done, {time.monotonic() - self.started:.0f} s: "
                      f"{stage} {how}", flush=True)


@contextmanager
def dvc_errors(what):
    """DVC's Python API raises DvcException: one line naming what failed, no traceback."""
    from dvc.exceptions import DvcException

    try:
        yield
    except DvcException as error:
        raise UserError(f"{what}: {error}") from None


def _queue_tasks(logs_of=()):
    """({experiment name: status} of every task DVC's queue holds, {name: log so far} of those in
    logs_of that have started). DVC internals: `dvc queue status` has no --json and `dvc queue
    logs NAME` reads one log per process, so this reads the same table and the same log files
    (the `.out` file of the task's process) through the queue object, in one process. A task
    shown as Running that no worker attends is STARTING or ORPHANED (_attended). A name queued
    again after a failure has two tasks: the newer counts (in a same-second tie, the active one)."""
    from dvc.repo import Repo

    with dvc_errors("reading DVC's experiment queue"), Repo() as repo:
        queue = repo.experiments.celery_queue
        newest = {}
        for task in sorted(queue.status(), key=lambda t: (t["timestamp"], t["status"] in ("Queued", "Running"))):
            newest[task["name"]] = task
        statuses = {name: _attended(queue, task["rev"]) if task["status"] == "Running" else task["status"]
                    for name, task in newest.items()}
        logs = {name: _read_log(queue, newest[name]["rev"]) for name in logs_of
                if statuses.get(name) not in (None, "Queued")}
    return statuses, logs


def _attended(queue, stash_rev):
    """What a task DVC shows as Running is: STARTING when no worker has begun to set it up (neither
    the executor's info file nor the record of the experiment's process exists), ORPHANED when
    that process has ended but its record has no exit code (the worker that waited for it died),
    else "Running"."""
    process = queue.proc.get(stash_rev)
    if process is None:
        return "Running" if Path(queue.get_infofile_path(stash_rev)).exists() else STARTING
    return ORPHANED if process.returncode is None and not _alive(process.pid) else "Running"


def _alive(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's: it exists
        return True


def _read_log(queue, stash_rev):
    try:
        return Path(queue.proc[stash_rev].stdout).read_text(errors="replace")
    except (KeyError, OSError):  # not started yet, or its record already removed
        return ""


def queue_states(names):
    """{name: "Queued" | STARTING | ORPHANED | "Running" | "Success" | "Failed" | None (not in the queue)}."""
    tasks, _ = _queue_tasks()
    return {name: tasks.get(name) for name in names}


def succeeded(states):
    """The names in {name: state} whose experiment finished."""
    return [name for name, state in states.items() if state == "Success"]


def forget_failed(wanted):
    """Drop the queue records of failed experiments whose name wanted(name) accepts."""
    forget([name for name, status in _queue_tasks()[0].items() if status == "Failed" and name and wanted(name)])


def forget(names):
    """Drop the queue records of the named failed experiments: a new run supersedes them (a failed
    run keeps them so that `dvc queue logs NAME` can show what went wrong)."""
    if names:
        dvc("queue", "remove", *names)


def queue_logs(names):
    """{name: log} of the named experiments that have started, read in this process (_queue_tasks),
    not by a `dvc queue logs` process each."""
    return _queue_tasks(logs_of=names)[1] if names else {}


def queue_log(name):
    result = subprocess.run([DVC, "queue", "logs", name], capture_output=True, text=True)
    return result.stdout + result.stderr


def last_line(text):
    """The log's line that says what went wrong: a stage's own one-line error (stages end with
    "error: …"), else DVC's last "ERROR: …" (it names the stage and how it exited; a child the
    killed stage left behind may print a traceback after it), else the last line."""
    lines = [line for line in text.splitlines() if line.strip()]
    for prefix in ("error: ", "ERROR: "):
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            return found[-1]
    return lines[-1] if lines else "(no output)"


def report_failures(states):
    """Print each failed experiment with the line of its log that names the problem;
    return how many failed (`dvc queue logs NAME` shows the whole log)."""
    failed = [name for name, state in states.items() if state != "Success"]
    logs = queue_logs(failed)
    for name in failed:  # no log on record (it failed while starting): DVC's command says why
        why = UNATTENDED_LINES.get(states[name]) or last_line(logs.get(name) or queue_log(name))
        print(f"FAILED {name}: {why}", file=sys.stderr)
    return len(failed)


def training_counts(names):
    """(trained, restored) (arm, seed) trainings in the named experiments, read from DVC's
    own log lines: "Running stage 'train_…'" versus "Stage 'train_…' is cached"."""
    return count_trainings("\n".join(queue_logs(names).values()))


def count_trainings(log):
    """(trained, restored) (arm, seed) trainings in the output of a DVC run."""
    return len(re.findall(r"Running stage 'train_", log)), len(RESTORED.findall(log))


def clear_queue_records(names):
    """Drop finished helper experiments: their trainings live on in the run cache."""
    if names:
        dvc("exp", "remove", *names)  # also drops their queue records


def share(names, git_remote="origin"):
    """Send finished experiments (git refs) and their outputs and run records (DVC remote)."""
    fix = "check `git remote -v` and `dvc remote list` (a default DVC remote: dvc remote add -d NAME URL)"
    dvc("exp", "push", "--run-cache", git_remote, *names, fix=fix)


def fetch_all(git_remote="origin"):
    """Fetch every experiment of this commit that others pushed, and the run records."""
    fix = "check `git remote -v` and `dvc remote list` (a default DVC remote: dvc remote add -d NAME URL)"
    return dvc("exp", "pull", "--run-cache", git_remote, fix=fix)


@functools.cache  # asked before each `dvc repro`; a run does not change its remotes
def has_default_remote():
    return subprocess.run([DVC, "remote", "default"], capture_output=True).returncode == 0


def repro(*targets, git_files=None):
    """`dvc repro targets` with its output passed through as it comes (DVC's advice to
    `dvc push` only when a default remote is set); return its exit code. DVC's advice to
    `git add` files is left out; the files it names are appended to git_files (git_add_advice)."""
    keep_hint = has_default_remote()
    with subprocess.Popen([DVC, "repro", *targets], stdout=subprocess.PIPE, text=True) as process:
        for line in without_git_advice(process.stdout, git_files if git_files is not None else []):
            if keep_hint or line.strip() != PUSH_HINT:
                sys.stdout.write(line)
                sys.stdout.flush()
    return process.returncode


def without_git_advice(lines, files):
    """The lines of DVC's output without its `git add` advice (and the blank lines around it);
    the files it names are appended to files."""
    blank, advice = [], False
    for line in lines:
        if line.strip() == GIT_ADVICE:
            advice, blank = True, []
        elif advice:
            if line.strip().startswith("git add "):
                files.extend(line.split()[2:])
            advice = line.strip() != AUTOSTAGE_ADVICE
        elif not line.strip():
            blank.append(line)
        else:
            yield from blank
            blank = []
            yield line
    yield from blank


def git_add_advice(files):
    """DVC's advice to `git add` dvc.lock (and the files it named), when one of them differs from
    git's index; None when git has them as they are (or this is no git repository)."""
    files = sorted({"dvc.lock", *files})
    status = subprocess.run(["git", "status", "--porcelain", "--", *files], capture_output=True, text=True)
    # the second column: the file as it is against git's index ('?' untracked); a staged change needs no add
    if status.returncode or all(line[1] == " " for line in status.stdout.splitlines()):
        return None
    return f"\n{GIT_ADVICE}\n\n\tgit add {' '.join(files)}\n"


def changed_stages():
    """`dvc status --json`: {stage: [changes]} for every stage that would run."""
    return json.loads(dvc("status", "--json"))


def lock_outputs(lock=Path("dvc.lock")):
    """Every output path dvc.lock records (its documented YAML: stages → outs → path)."""
    import yaml

    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.exists() else {}
    return [out["path"] for stage in stages.values() for out in stage.get("outs", [])]


def stage_names():
    """Every stage, foreach items expanded, in dvc.yaml's order (`dvc stage list`)."""
    return dvc("stage", "list", "--name-only").split()


def finished_experiments(read_outputs):
    """Every finished experiment of the current commit, read through dvc.api:
    [{"name", "params": params.yaml as a dict, **read_outputs(exists, read_text)}], where
    exists(path) and read_text(path) see the experiment's files."""
    import dvc.api
    import yaml

    records = []
    with dvc_errors("reading the experiments"):
        for row in dvc.api.exp_show():
            if row["typ"] == "baseline" or not row["Experiment"] or row["State"] not in (None, "Success"):
                continue
            fs = dvc.api.DVCFileSystem(repo=".", rev=row["rev"])
            records.append({"name": row["Experiment"], "params": yaml.safe_load(fs.read_text("params.yaml")),
                            **read_outputs(fs.exists, fs.read_text)})
    return records


def point_task_commands(name, set_options, git_remote="origin"):
    """What a cluster task runs in its clone for one grid point: the experiment (restoring what the
    remotes' run cache holds), then the experiment and its run records pushed to the remotes."""
    return [["dvc", "exp", "run", "--pull", "--name", name, *set_options],
            ["dvc", "exp", "push", "--run-cache", git_remote, name]]


def unweighted_task_commands(set_options):
    """What a cluster task runs in its clone to train a grid point's unweighted arm, every seed,
    for the point and its group's other points to restore: those stages (and what they need)
    under the point's params, then their outputs and run records pushed to the DVC remote. The
    experiment DVC records in the clone is not kept: the points make their own."""
    return [["dvc", "exp", "run", "--pull", *set_options, "train_unweighted"],
            ["dvc", "push", "--run-cache", "train_unweighted"]]


def training_task_commands(stage):
    """What a cluster task runs in its clone for one (arm, seed) training: the stage (restoring
    what is on the remote), then its outputs and run record pushed to the DVC remote."""
    return [["dvc", "repro", "--pull", stage], ["dvc", "push", "--run-cache", stage]]


# DVC internals: DVC has no command that drops a stage's entry from dvc.lock or orders the
# file; dvc.utils.serialize.modify_yaml is DVC's own reader and writer of it.

def forget_lock_entries(names, lock=Path("dvc.lock")):
    """Remove stages from dvc.lock. A stage whose lock entry matches its deps but names outputs
    missing from the cache is re-run by `dvc repro` even when the run cache holds the same
    run; without the entry, `dvc repro` restores it from the run cache."""
    from dvc.utils.serialize import modify_yaml

    if not names or not lock.exists():
        return
    with modify_yaml(lock) as data:
        for name in names:
            data["stages"].pop(name, None)


def order_lock(order, lock=Path("dvc.lock")):
    """Put dvc.lock's stages in the given order (stages not listed last)."""
    from dvc.utils.serialize import modify_yaml

    if not lock.exists():
        return
    rank = {name: i for i, name in enumerate(order)}
    with modify_yaml(lock) as data:
        stages = data["stages"]
        entries = sorted(stages.items(), key=lambda item: rank.get(item[0], len(rank)))
        stages.clear()
        stages.update(entries)
