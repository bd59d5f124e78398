"""DVC's experiment queue, run cache and remotes, driven through DVC's own commands and API:
queue experiments, start workers, wait, report failures, share and fetch experiments."""
import re
import subprocess
import sys
import time
from pathlib import Path

from classweights.errors import UserError

DVC = str(Path(sys.executable).parent / "dvc")  # the dvc of the venv this runs in
ACTIVE = ("Queued", "Running")


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


def run_queued(names, jobs):
    """Start `jobs` workers (`dvc queue start -j`), wait until every named experiment has
    finished; return {name: "Success" | "Failed"}. Ctrl-C stops the waiting, not the workers."""
    if not names:
        return {}
    dvc("queue", "start", "--jobs", str(jobs))
    try:
        while True:
            states = queue_states(names)
            if not any(state in ACTIVE for state in states.values()):
                return states
            time.sleep(2)
    except KeyboardInterrupt:
        raise UserError("interrupted; the queued experiments keep running in the background (`dvc queue status`; "
                        "`dvc queue stop --kill` stops them); run the same make command again to wait for them "
                        "and queue only what is missing") from None


def _queue_statuses():
    """{experiment name: status} of every task DVC's queue holds (`dvc queue status`)."""
    from dvc.repo import Repo

    with Repo() as repo:
        return {task["name"]: task["status"] for task in repo.experiments.celery_queue.status()}


def queue_states(names):
    """{name: "Queued" | "Running" | "Success" | "Failed" | None (not in the queue)}."""
    tasks = _queue_statuses()
    return {name: tasks.get(name) for name in names}


def succeeded(states):
    """The names in {name: state} whose experiment finished."""
    return [name for name, state in states.items() if state == "Success"]


def forget_failed(prefix):
    """Drop the queue records of failed experiments named prefix…: a new run supersedes them
    (a failed run keeps them so that `dvc queue logs NAME` can show what went wrong)."""
    failed = [name for name, status in _queue_statuses().items()
              if status == "Failed" and (name or "").startswith(prefix)]
    if failed:
        dvc("queue", "remove", *failed)


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
    for name in failed:
        print(f"FAILED {name}: {last_line(queue_log(name))}", file=sys.stderr)
    return len(failed)


def training_counts(names):
    """(trained, restored) (arm, seed) trainings in the named experiments, read from DVC's
    own log lines: "Running stage 'train_…'" versus "Stage 'train_…' is cached"."""
    logs = "\n".join(queue_log(name) for name in names)
    trained = len(re.findall(r"Running stage 'train_", logs))
    restored = len(re.findall(r"Stage 'train_[^']*' (?:is cached|didn't change)", logs))
    return trained, restored


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
