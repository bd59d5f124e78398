"""Training stages through real `dvc repro` runs: `dvc checkout` restores the same bytes, the
output is quiet and shows progress, a hard kill leaves nothing git or DVC can see, and a
weights.apply edit re-trains only the weighted arm. That the same params retrain the same bytes
from an empty cache (so a fresh clone reproduces dvc.lock) is shown in test_scaleout.py, where a
fresh clone trains on two queue workers and must reproduce the serial run's dvc.lock exactly."""
import json
import re
import shutil
import signal
import subprocess
import time

import psutil

from tools.sandbox import BIN, dvc, env, lock_text, ran_stages, run, set_params

TRAIN_STAGES = ["train_unweighted@0", "train_unweighted@1", "train_weighted@0", "train_weighted@1"]


def model_files(project):
    return {p.relative_to(project): p.read_bytes() for p in (project / "models").glob("*/seed_*/**/*") if p.is_file()}


def git_status(project):
    return run(project, "git", "status", "--porcelain", "--untracked-files=all").stdout


def test_the_first_run_is_quiet_and_shows_each_epoch(finished):
    _, first = finished
    output = first.stdout + first.stderr  # what the real stage processes printed, through dvc
    assert set(TRAIN_STAGES) <= set(ran_stages(first))
    assert not [line for line in output.splitlines() if re.match(r"[EWIF]\d{4} ", line)]  # no TensorFlow C++ logs
    for stage in TRAIN_STAGES:
        assert re.search(rf"^{re.escape(stage)}  epoch 1/1  loss \d+\.\d\d  val_acc \d\.\d\d  \d+\.\d s$", output,
                         re.MULTILINE), output


def test_checkout_restores_every_model_byte_for_byte(project):
    models = model_files(project)
    assert sorted(path.name for path in models if path.suffix == ".keras") == ["model.keras"] * 4
    for folder in (project / "models").glob("*/seed_*"):
        shutil.rmtree(folder)
    dvc(project, "checkout")
    assert model_files(project) == models and git_status(project) == ""


def test_a_training_killed_outright_leaves_nothing_git_or_dvc_can_see(project):
    lock = (project / "dvc.lock").read_text()
    repro = subprocess.Popen([str(BIN / "dvc"), "repro", "-f", "-s", "train_weighted@1"], cwd=project, env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = project / "models/weighted/.seed_1.partial"
    deadline = time.monotonic() + 120
    while not partial.exists():  # made as the training starts
        assert repro.poll() is None and time.monotonic() < deadline, repro.communicate()
        time.sleep(0.02)
    stage = next(p for p in psutil.Process(repro.pid).children(recursive=True) if "stages.train" in p.cmdline())
    stage.send_signal(signal.SIGKILL)  # as the OOM killer would: no clean-up runs
    repro.communicate(timeout=60)
    assert repro.returncode != 0 and partial.is_dir()  # the litter is really there

    assert git_status(project) == ""
    again = dvc(project, "repro")
    assert set(ran_stages(again)) <= {"train_weighted@1"}  # re-run or restored from the run cache; evaluate's
    assert "train_weighted@1" in again.stdout  # deps are unchanged, so it does not run
    assert (project / "dvc.lock").read_text() == lock and ".partial" not in lock
    assert git_status(project) == ""
    assert "up to date" in dvc(project, "status").stdout


def test_a_weights_apply_edit_retrains_only_the_weighted_arm_deterministically(project):
    set_params(project, {"weights": {"apply": "sampling"}})
    # what the edit re-runs, as DVC's status names it (no need to train every seed to see it)
    changed = json.loads(dvc(project, "status", "--json").stdout)
    assert sorted(changed) == ["check_params", "evaluate", "train_weighted@0", "train_weighted@1"]
    assert ran_stages(dvc(project, "repro", "train_weighted@0")) == ["check_params", "train_weighted@0"]
    lock = lock_text(project)
    forced = dvc(project, "repro", "-f", "-s", "train_weighted@0")
    assert ran_stages(forced) == ["train_weighted@0"]
    assert lock_text(project) == lock  # the same seed draws the same batches: same bytes (but the seconds)
