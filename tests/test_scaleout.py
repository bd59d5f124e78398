"""Scale-out end to end at tiny size: real `make repro JOBS=…`, real `make sweep` on a local Dask
cluster, clones of one bare git origin sharing one local-directory DVC remote; the DVC internals
the adapter names, each checked."""
import csv
import re
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml

from orchestration import executor, experiments
from tools.sandbox import (MAKE, ONE_SEED, clone, commit, dvc, env, link_venv, lock_text, make,
                           make_project, metrics_files, ran_stages, run, shared_origin)

TINY_SWEEP = {"grid": {"imbalance.ratio": [2, 5]}}  # one point a shard (a group's second point: test_cluster.py)


def training(project, arm, process=None, seconds=300):
    """The Python process training `arm` in a Dask worker of project, once it has started (not
    the shell DVC may start it from: the OOM killer picks the process holding the memory), while
    `process` (the command that started it, if given) still runs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process is None or process.poll() is None, process.communicate()
        for candidate in psutil.process_iter(["cmdline", "cwd"]):
            command = candidate.info["cmdline"] or []
            if (command and Path(command[0]).name.startswith("python") and "stages.train" in command
                    and arm in " ".join(command) and str(project) in (candidate.info["cwd"] or "")):
                return candidate
        time.sleep(0.5)  # a scan of every process costs ~7 ms of CPU or more; a tiny training lasts ~5 s
    raise AssertionError(f"no {arm} training started in {project}")


QUEUE_LOG = """Running stage 'train_weighted@0':
> python -m stages.train --arm weighted --seed 0
ERROR: failed to reproduce 'train_weighted@0': failed to run: python -m stages.train, exited with 137
Traceback (most recent call last):
FileNotFoundError: [Errno 2] No such file or directory: 'models'
"""


def test_each_dvc_internal_the_adapter_names_is_still_there(tmp_path):
    """A DVC upgrade that moves or changes one of them fails here, naming it."""
    import importlib

    for internal in experiments.INTERNALS:
        module, _, name = internal.rpartition(".")
        assert hasattr(importlib.import_module(module), name), f"DVC internal {internal} is gone"
    from dvc.exceptions import DvcException

    with pytest.raises(experiments.UserError, match="^reading: boom$"):  # dvc_errors: one line
        with experiments.dvc_errors("reading"):
            raise DvcException("boom")
    # modify_yaml reads, lets the caller change and writes back the same YAML (dvc.lock edits)
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  evaluate:\n    cmd: e\n  train_b@0:\n    cmd: b\n  fetch:\n    cmd: f\n")
    experiments.forget_lock_entries(["train_b@0"], lock)
    experiments.order_lock(["fetch", "train_b@0", "evaluate"], lock)
    assert lock.read_text() == "schema: '2.0'\nstages:\n  fetch:\n    cmd: f\n  evaluate:\n    cmd: e\n", \
        "DVC internal dvc.utils.serialize.modify_yaml no longer edits dvc.lock in place"


def test_a_failure_is_named_by_the_stage_s_error_else_dvc_s_not_by_what_a_leftover_child_printed():
    assert experiments.last_line(QUEUE_LOG).endswith("'train_weighted@0': failed to run: python -m stages.train, "
                                                     "exited with 137")
    stage_error = QUEUE_LOG.replace("Traceback", "error: ratio must be at least 1\nTraceback")
    assert experiments.last_line(stage_error) == "error: ratio must be at least 1"
    assert experiments.last_line("Reproducing\nKilled\n\n") == "Killed"
    assert experiments.last_line("") == "(no output)"


def test_parallel_repro_from_an_empty_cache_resumes_after_a_killed_training_and_matches_serial(serial, tmp_path):
    # the session's one-seed run (conftest.py: `make repro JOBS=1`, committed and pushed as the
    # README shares a run; a colleague's clone that pulls it and trains nothing: test_first_hour.py)
    project, first, origin = serial
    assert ran_stages(first) == ["check_params", "compute_weights", "evaluate", "fetch", "frozen_features",
                                 "preprocess", "train_unweighted@0", "train_weighted@0"]
    fresh = clone(origin, "parallel", into=tmp_path)  # a local `make repro` pulls nothing from the DVC remote
    # Another CPU model: the committed dvc.lock names model files this machine will not reproduce
    # byte for byte, and none of them is in its (empty) cache.
    lock = (fresh / "dvc.lock").read_text()
    (fresh / "dvc.lock").write_text(re.sub(r"(path: models/\S+\n\s+hash: md5\n\s+md5: )\w{6}", r"\g<1>000000", lock))
    # A training killed in its worker, as the OOM killer would: the other worker finishes, and
    # the next run restores what finished from the run cache and trains only the rest.
    interrupted = subprocess.Popen([*MAKE, "repro", "JOBS=2"], cwd=fresh, env=env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    training(fresh, "--arm weighted", interrupted).kill()
    out, err = interrupted.communicate(timeout=900)
    assert interrupted.returncode != 0
    # -9 when DVC's shell execs the training (bash), 137 when it waits for it (dash)
    assert re.search(r"^FAILED train_weighted@0: ERROR: .*'train_weighted@0'.*exited with (-9|137)$", err,
                     re.MULTILINE), err
    assert "(arm, seed) trainings: 1 ran, 0 restored from the run cache" in out
    ours = [line for line in err.splitlines() if not line.startswith(("make: ***", "warning: "))]
    assert len(ours) == 2 and ours[-1].startswith("error: a training failed (above); finished trainings are kept"), err
    parallel = make(fresh, "repro", "JOBS=2")
    assert "training 2 (arm, seed) pairs on 2 local workers" in parallel.stdout
    assert "(arm, seed) trainings: 1 ran, 1 restored from the run cache" in parallel.stdout
    # a line as each training ends, from the workers' events
    done = re.findall(r"^  (\d) of 2 trainings done, \d+ s: (train_\w+@0) (.+)$", parallel.stdout, re.MULTILINE)
    assert [count for count, _, _ in done] == ["1", "2"], parallel.stdout
    assert sorted((stage, how) for _, stage, how in done) == [("train_unweighted@0", "restored from the run cache"),
                                                              ("train_weighted@0", "trained")]
    final = parallel.stdout.split("restoring them", 1)[1]
    assert re.findall(r"Running stage '([^']+)'", final) == ["evaluate"]  # every training: from the run cache
    assert re.findall(r"Stage '(train_\w+@0)' is cached", final) == ["train_unweighted@0", "train_weighted@0"]
    assert metrics_files(fresh) == metrics_files(project)
    # the same models, so the serial run's dvc.lock (but the seconds), in the same stage order: nothing else
    # for git to show
    assert lock_text(fresh) == lock_text(project)
    assert run(fresh, "git", "status", "--porcelain", "--", ".", ":!dvc.lock", ":!metrics/training_seconds.json").stdout == ""
    assert "Data and pipelines are up to date" in dvc(fresh, "status").stdout
    assert ran_stages(dvc(fresh, "repro")) == []
    assert dvc(fresh, "exp", "list").stdout.strip() == ""  # the trainings left no experiment behind


def tiny_sweep_origin(tmp, sweeps=None):
    """A one-seed project with tiny-sweep.yaml (or the given {file name: sweep}), shared through a
    bare origin and a DVC remote in tmp."""
    project = make_project(tmp / "seed", ONE_SEED)
    for name, grid in (sweeps or {"tiny-sweep.yaml": TINY_SWEEP}).items():
        (project / name).write_text(yaml.safe_dump(grid))
    commit(project, "tiny sweep")
    shared_origin(tmp, project)
    return tmp


@pytest.fixture(scope="module")
def sweep_origin(subprocesses, tmp_path_factory):
    return tiny_sweep_origin(tmp_path_factory.mktemp("sweep"))


def test_two_machines_each_run_a_shard_and_a_third_draws_the_map_without_training(sweep_origin):
    tmp = sweep_origin
    machines = [clone(tmp, "machine-1"), clone(tmp, "machine-2")]
    shards = [subprocess.Popen([*MAKE, "sweep", "SWEEP=tiny-sweep.yaml", f"SHARD={k}/2", f"JOBS={3 - k}"],
                               cwd=machine, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for k, machine in enumerate(machines, start=1)]
    for shard in shards:
        out, err = shard.communicate(timeout=900)
        assert shard.returncode == 0, out + err
        # one ratio per machine, both of its arms trained there
        assert "1 grid point in shard" in out and "running 1" in out
        assert "(arm, seed) trainings: 2 ran, 0 restored from the run cache" in out
        assert "pushed 1 experiment of shard" in out

    third = clone(tmp, "third")
    report = make(third, "sweep-report", "SWEEP=tiny-sweep.yaml")
    assert "2 of 2 grid points have a finished experiment" in report.stdout
    with open(third / "sweep/sweep.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["imbalance.ratio"] for r in rows) == ["2", "5"]
    assert all(0 <= float(r["weighted.mean.accuracy"]) <= 1 for r in rows)
    assert all(0 <= float(r["logit_adjusted.mean.accuracy"]) <= 1 for r in rows)  # the post-hoc arm is read too
    with open(third / "sweep/best.csv", newline="") as handle:
        best = list(csv.DictReader(handle))
    # per ratio and metric: unweighted, post-hoc logit adjustment and the weighted arm; one seed, so no test
    assert sorted((r["imbalance.ratio"], r["metric"], r["remedies"], r["seeds"], r["beats_runner_up"]) for r in best) == [
        (ratio, metric, "3", "1", "False") for ratio in ("2", "5") for metric in ("balanced_accuracy", "minority_recall")]
    assert "(no interval with one seed)" in (third / "sweep/sweep.md").read_text()
    assert (third / "sweep/sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (third / "sweep/sweep.md").read_text().count("| sweep-") == 2

    again = make(third, "sweep", "SWEEP=tiny-sweep.yaml")
    assert "running 0" in again.stdout and "0 ran" in again.stdout
    # Re-running a point here restores every training another machine did (run cache pulled).
    rerun = dvc(third, "exp", "run", "--temp", "--pull", "-S", "imbalance.ratio=5", "-S", "weights.strategy=balanced")
    assert not re.findall(r"Running stage 'train_", rerun.stdout), rerun.stdout
    assert sorted(re.findall(r"Stage '(train_\w+@0)' is cached", rerun.stdout)) == [
        "train_unweighted@0", "train_weighted@0"]


def test_an_unusable_remote_shows_dvc_s_error_and_the_command_to_fix(sweep_origin):
    broken = clone(sweep_origin, "broken")
    dvc(broken, "remote", "modify", "--local", "shared", "url", "/dev/null/remote")
    result = make(broken, "sweep-report", "SWEEP=tiny-sweep.yaml", check=False)
    assert result.returncode != 0 and "ERROR" in result.stderr  # DVC's own message
    ours = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert ours == ["error: `dvc exp pull --run-cache origin` failed; check `git remote -v` and `dvc remote list` "
                    "(a default DVC remote: dvc remote add -d NAME URL)"]


def test_failed_grid_points_are_named_with_their_last_log_line_and_the_rest_still_run(subprocesses, tmp_path):
    project = link_venv(make_project(tmp_path / "failing", ONE_SEED))
    missing = {"fixed": {"data.source": "fashion-mnist"}, "grid": {"data.path": ["/nowhere/a", "/nowhere/b"]}}
    (project / "failing.yaml").write_text(yaml.safe_dump(missing))
    result = make(project, "sweep", "SWEEP=failing.yaml", "JOBS=1", check=False)
    assert result.returncode != 0
    failed = [line for line in result.stderr.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 2, result.stderr  # the second point ran although the first had failed
    assert [line.split(": error: ")[1].startswith("data.path") and "/nowhere/" in line for line in failed] == [True, True], failed
    assert "error: 2 grid point(s) failed (above); run `make sweep` again to retry only those" in result.stderr


def test_local_tasks_copy_every_change_since_head_staged_or_not(subprocesses, tmp_path, monkeypatch):
    """git's index is not HEAD: an edit already `git add`-ed (as DVC's advice asks for dvc.lock), a
    new file added, a file removed with `git rm`, an edit not staged and an untracked file all reach
    the copies; an ignored file does not."""
    monkeypatch.chdir(tmp_path)
    for args in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        run(tmp_path, "git", *args)
    dvc(tmp_path, "init", "-q")
    for name in ("params.yaml", "gone.py", "kept.py", ".gitignore"):
        (tmp_path / name).write_text("ignored.txt\n" if name == ".gitignore" else f"{name} at HEAD\n")
    run(tmp_path, "git", "add", ".")
    run(tmp_path, "git", "commit", "-qm", "head")
    (tmp_path / "params.yaml").write_text("staged edit\n")
    (tmp_path / "new.py").write_text("staged new file\n")
    run(tmp_path, "git", "add", "params.yaml", "new.py")
    run(tmp_path, "git", "rm", "-q", "gone.py")
    (tmp_path / "kept.py").write_text("edit not staged\n")
    (tmp_path / "untracked.py").write_text("untracked\n")
    (tmp_path / "ignored.txt").write_text("ignored\n")
    workspace = executor.local_workspace()
    assert workspace.edits == {"params.yaml": b"staged edit\n", "new.py": b"staged new file\n", "gone.py": None,
                               "kept.py": b"edit not staged\n", "untracked.py": b"untracked\n"}
    assert workspace.commit == run(tmp_path, "git", "rev-parse", "HEAD").stdout.strip()
    assert workspace.cache == str(tmp_path / ".dvc" / "cache")
