"""The one place that talks to DVC: its command line (with --json where it has one) and dvc.api,
plus the DVC internals listed in INTERNALS (each tested in tests/test_scaleout.py, so that a DVC
upgrade that changes one fails there, naming it). Reproduce, read what is left to run and what
finished, say what a task runs, share and fetch experiments."""
import functools
import json
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from classweights.errors import UserError
from classweights.params import load_params
from classweights.paths import ARMS, model_dir, seconds_file

DVC = str(Path(sys.executable).parent / "dvc")  # the dvc of the venv this runs in
PUSH_HINT = "Use `dvc push` to send your updates to remote storage."
# DVC's advice after a repro that wrote its lock file, even one that changed no byte of it; held back
# and given again only when a file it names differs from what git has (git_add_advice).
GIT_ADVICE = "To track the changes with git, run:"
AUTOSTAGE_ADVICE = "dvc config core.autostage true"
# What a run's output says about one (arm, seed) training: the stage's own last line, or DVC's
# line for a stage it restored from the run cache instead of running it.
TRAINED = re.compile(r"^(train_\w+@\d+): saved", re.MULTILINE)
RESTORED = re.compile(r"Stage '(train_\w+@\d+)' (?:is cached|didn't change)")
REMOTE_FIX = "check `git remote -v` and `dvc remote list` (a default DVC remote: dvc remote add -d NAME URL)"

# Every DVC internal this project uses, where DVC has no command or dvc.api function for the job
# ({name: what for}). tests/test_scaleout.py checks each one, naming it when an upgrade breaks it.
INTERNALS = {
    "dvc.exceptions.DvcException": "the error dvc.api raises: one line, no traceback (dvc_errors)",
    "dvc.utils.serialize.modify_yaml": "drop and order dvc.lock's entries (forget_lock_entries, order_lock): "
                                       "no command does",
}
# And DVC's wording of what a run did, which no --json output says: TRAINED's and RESTORED's lines
# and count_trainings' "Running stage 'NAME'" (the progress and the counts of every run; the
# end-to-end tests in tests/test_scaleout.py and test_cluster.py assert those counts).


def dvc(*args, fix=None):
    """Run `dvc args`; return its stdout. A failure shows DVC's own error, then one line
    of ours naming the command and, if given, what to fix."""
    result = subprocess.run([DVC, *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr or result.stdout)
        raise UserError(f"`dvc {' '.join(args)}` failed{'; ' + fix if fix else ''}")
    return result.stdout


@contextmanager
def dvc_errors(what):
    """DVC's Python API raises DvcException: one line naming what failed, no traceback."""
    from dvc.exceptions import DvcException

    try:
        yield
    except DvcException as error:
        raise UserError(f"{what}: {error}") from None


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


def finished_training(line):
    """(stage, "trained" | "restored from the run cache") when a line of a run's output says an
    (arm, seed) training has ended, else None."""
    for pattern, how in ((TRAINED, "trained"), (RESTORED, "restored from the run cache")):
        found = pattern.search(line)
        if found:
            return found.group(1), how
    return None


def count_trainings(log):
    """(trained, restored) (arm, seed) trainings that ended in the output of a DVC run: a training
    that started and failed (a failed share's log) is neither."""
    return len(TRAINED.findall(log)), len(RESTORED.findall(log))


def share(names, git_remote="origin"):
    """Send finished experiments (git refs) and their outputs and run records (DVC remote)."""
    dvc("exp", "push", "--run-cache", git_remote, *names, fix=REMOTE_FIX)


def fetch_all(git_remote="origin"):
    """Fetch every experiment of this commit that others pushed, and the run records."""
    return dvc("exp", "pull", "--run-cache", git_remote, fix=REMOTE_FIX)


@functools.cache  # asked before each `dvc repro`; a run does not change its remotes
def has_default_remote():
    return subprocess.run([DVC, "remote", "default"], capture_output=True).returncode == 0


def cache_dir():
    """This workspace's DVC cache folder (`dvc cache dir`): the one local tasks share."""
    return dvc("cache", "dir").strip()


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


def remove_stale_models(seeds, root=Path(".")):
    """Delete every training's outputs (models/<arm>/seed_N/, metrics/seconds/<arm>/seed_N.json) for
    each N not in seeds; return what was deleted.

    evaluate depends on the whole models/<arm> and metrics/seconds folders (DVC cannot template a
    list of them), and DVC leaves the outputs of a seed dropped from train.seeds in place: they
    would enter evaluate's hashes, and after `make restore` evaluate would run again and change
    dvc.lock. They are in DVC's cache and run cache, so a later run with those seeds restores them."""
    current = {root / path for arm in ARMS for seed in seeds for path in (model_dir(arm, seed), seconds_file(arm, seed))}
    found = [path for arm in ARMS for pattern in (model_dir(arm, "*"), seconds_file(arm, "*"))
             for path in sorted(root.glob(str(pattern)))]
    stale = [path for path in found if path not in current]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return stale


def serial_repro(*repro_args, forget_unrestorable=()):
    """`dvc repro [repro_args]`, after removing the outputs of seeds no longer in train.seeds and
    dropping the lock entries of forget_unrestorable, trainings that no cache here holds (so that
    those the run cache knows are restored, not re-trained); dvc.lock in pipeline order."""
    remove_stale_models(load_params().train.seeds)
    forget_lock_entries(forget_unrestorable)
    named = []
    code = repro(*repro_args, git_files=named)
    # DVC appends a stage it restores to the end of the lock: without this the same run gives a
    # dvc.lock that differs in order only, and a fresh clone's `make repro` leaves git status dirty.
    order_lock(stage_names())
    advice = git_add_advice(named)  # only when dvc.lock (or a file DVC named) really changed
    if advice:
        print(advice, flush=True)
    return code


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


def finished_experiments(paths):
    """Every finished experiment of the current commit, read through dvc.api: [{"name", "params":
    params.yaml as a dict, "files": {path: text} of those among `paths` the experiment has}]."""
    import dvc.api
    import yaml

    records = []
    with dvc_errors("reading the experiments"):
        for row in dvc.api.exp_show():
            if row["typ"] == "baseline" or not row["Experiment"] or row["State"] not in (None, "Success"):
                continue
            fs = dvc.api.DVCFileSystem(repo=".", rev=row["rev"])
            records.append({"name": row["Experiment"], "params": yaml.safe_load(fs.read_text("params.yaml")),
                            "files": {path: fs.read_text(path) for path in paths if fs.exists(path)}})
    return records


def task_commands(task, shared_cache=None):
    """What a task (orchestration.plan.Task) runs in its copy of the workspace, whose git remote
    `origin` is where it came from. shared_cache (a local run: the workspace's cache folder): the
    copy uses that cache (`dvc cache dir`, run cache included), so only an experiment's git ref goes
    back; else (a cluster) it restores what the remotes hold and pushes its outputs and run records."""
    pull = [] if shared_cache else ["--pull"]
    share = [["dvc", "cache", "dir", "--local", shared_cache]] if shared_cache else []
    if task.kind == "training":  # --keep-going: a failed training stops none of the others in its share
        run = ["dvc", "repro", *pull, *(["--keep-going"] if len(task.targets) > 1 else []), *task.targets]
        push = ["dvc", "push", "--run-cache", *task.targets]
    elif task.kind == "unweighted arm":  # its experiment is not kept: the group's points make their own
        run = ["dvc", "exp", "run", *pull, *task.options, "train_unweighted"]
        push = ["dvc", "push", "--run-cache", "train_unweighted"]
    else:  # a grid point
        run = ["dvc", "exp", "run", *pull, "--name", task.name, *task.options]
        push = ["dvc", "exp", "push", *(["--no-cache"] if shared_cache else ["--run-cache"]), "origin", task.name]
    return [*share, run] + ([push] if task.kind == "point" or not shared_cache else [])


# DVC internals (INTERNALS): DVC has no command that drops a stage's entry from dvc.lock or orders
# the file; dvc.utils.serialize.modify_yaml is DVC's own reader and writer of it.

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
