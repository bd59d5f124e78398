"""A new user's first hour, through the commands the README shows: a bad params.yaml changes no
tracked file whichever command ran and the project's line comes first, a failing stage under
`make repro` is no traceback, `make restore` goes back to the committed run, the README's
sharing lines work as written, and the README stays short and readable."""
import ast
import re
import subprocess
import sys

import pytest
import yaml

from orchestration import executor, experiments, plan, sweep_report
from tests.conftest import README, readme_block
from tools.sandbox import (ROOT, clone_finished, dvc, env, link_venv, make, metrics_files, ran_stages, run, set_params,
                           shipped_params)

def git_status(project):
    return run(project, "git", "status", "--porcelain", "--untracked-files=all").stdout


def first_error(stderr):
    return next(line for line in stderr.splitlines() if line.startswith(("error: ", "ERROR: ")))


# --- a bad params.yaml ------------------------------------------------------------------------

TYPO = "error: params.yaml: unknown key 'weights.stratgy'; allowed keys in weights: strategy, beta, apply, defer_epoch"
BETA = "error: params.yaml: weights.beta = 1.5: Input should be less than 1"


def misspell_strategy(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["weights"]["stratgy"] = params["weights"].pop("strategy")
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.parametrize("command", ["dvc repro", "dvc exp run", "make repro"])
@pytest.mark.parametrize("edit, line", [(misspell_strategy, TYPO),
                                        (lambda p: set_params(p, {"weights": {"beta": 1.5}}), BETA)],
                         ids=["misspelled key", "value out of range"])
def test_a_bad_params_file_changes_no_tracked_file_and_our_line_comes_first(project, command, edit, line):
    link_venv(project)
    edit(project)
    program, *args = command.split()
    result = (dvc(project, *args, check=False) if program == "dvc" else make(project, *args, check=False))
    assert result.returncode != 0
    assert first_error(result.stderr) == line and "Traceback" not in result.stderr
    assert git_status(project) == " M params.yaml\n"  # the user's own edit, nothing else


def test_seeds_that_dvc_cannot_expand_stop_before_anything_runs_and_make_names_the_key(project):
    link_venv(project)
    set_params(project, {"train": {"seeds": 3}})
    plain = dvc(project, "repro", check=False)
    # DVC expands train.seeds itself before any stage runs: its own line, then nothing changed
    assert plain.returncode != 0 and "'stages.train_unweighted.foreach'" in plain.stderr
    assert "expected list/dictionary, got int" in plain.stderr
    assert git_status(project) == " M params.yaml\n"
    ours = make(project, "repro", check=False)
    assert first_error(ours.stderr) == "error: params.yaml: train.seeds = 3: Input should be a valid list"


def test_a_stage_script_run_by_path_says_how_to_run_it(subprocesses):
    for script in sorted((ROOT / "stages").glob("[a-z]*.py")):
        result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode != 0 and result.stdout == ""
        assert result.stderr == (f"error: run stages as `python -m stages.{script.stem}` from the project root, "
                                 "or `dvc repro`\n")


# --- make repro: failures, progress, warnings -------------------------------------------------

@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_failing_stage_under_make_repro_is_its_own_line_never_a_traceback(project, jobs):
    link_venv(project)
    (project / "data/input/mnist.npz").write_bytes(b"not Keras' mnist.npz")
    set_params(project, {"data": {"source": "mnist", "path": "data/input/mnist.npz"}})
    result = make(project, "repro", f"JOBS={jobs}", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert first_error(result.stderr).startswith("error: data/input/mnist.npz: checksum mismatch")
    assert "ERROR: failed to reproduce 'fetch'" in result.stderr  # DVC's line names the stage
    # fetch's tracked output is kept (persist); dvc.lock records the check that passed
    assert git_status(project) == " M dvc.lock\n M params.yaml\n?? data/input/mnist.npz\n"


def test_a_data_path_that_does_not_exist_is_our_line_before_dvc_s_missing_dependency(project):
    set_params(project, {"data": {"source": "folder", "path": "data/input/clothes"}})
    result = dvc(project, "repro", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert first_error(result.stderr) == ("error: data.path data/input/clothes: not found; put your data there "
                                          "(see data/input/README.md) or correct data.path")
    assert git_status(project) == " M params.yaml\n"


def test_a_valid_edit_under_make_repro_warns_of_too_few_seeds_first_and_re_runs_only_what_it_touches(project):
    link_venv(project)
    set_params(project, {"evaluate": {"alpha": 0.1}})
    result = make(project, "repro", "JOBS=1")
    assert result.stderr.splitlines()[0] == (
        "warning: params.yaml: 2 seeds can never give a significant verdict at alpha 0.1 (the sign-flip test "
        "needs at least 5); the intervals still show the size of each difference")
    assert ran_stages(result) == ["check_params", "evaluate"]  # the check: on every params edit
    changed = [line.split()[-1] for line in git_status(project).splitlines()]
    assert "params.yaml" in changed and "metrics/comparison.json" in changed
    assert not [path for path in changed if path.startswith("data/")]  # the check's own file: the same bytes
    assert "dvc push" not in result.stdout  # no remote here: no advice to push


def test_one_training_line_per_finished_training_from_the_workers_events(capsys):
    log = ("Running stage 'train_unweighted@0':\n> python -m stages.train --arm unweighted --seed 0\n"
           "train_unweighted@0  epoch 1/1  loss 2.20  val_acc 0.30  1.0 s\n"
           "train_unweighted@0: saved models/unweighted/seed_0\n"
           "Stage 'train_weighted@0' is cached - skipping run, checking out outputs\n")
    finished = [experiments.finished_training(line) for line in log.splitlines()]
    assert [f for f in finished if f] == [("train_unweighted@0", "trained"),
                                          ("train_weighted@0", "restored from the run cache")]
    progress = executor.Progress(total=3)
    for stage, how in filter(None, finished):
        progress((0.0, {"task": "exp-1", "stage": stage, "how": how}))  # a Dask event: (time, message)
    lines = capsys.readouterr().out.splitlines()
    assert [re.sub(r", \d+ s:", ",", line) for line in lines] == [
        "  1 of 3 trainings done, train_unweighted@0 trained",
        "  2 of 3 trainings done, train_weighted@0 restored from the run cache"]
    # a task Dask runs again (its worker died) reports its trainings again: counted once
    progress((0.0, {"task": "exp-1", "stage": "train_unweighted@0", "how": "restored from the run cache"}))
    progress((0.0, {"task": "exp-2", "stage": "train_unweighted@0", "how": "trained"}))  # another point's
    assert [re.sub(r", \d+ s:", ",", line) for line in capsys.readouterr().out.splitlines()] == [
        "  3 of 3 trainings done, train_unweighted@0 trained"]


def test_fewest_seeds_for_a_verdict_is_where_2_over_2_to_the_n_drops_below_alpha():
    # 2/2^5 = 0.0625, 2/2^6 = 0.03125, 2/2^7 = 0.0156, 2/2^8 = 0.0078: by hand
    assert [plan.fewest_seeds_for_a_verdict(a) for a in (0.05, 0.1, 0.01, 0.5)] == [6, 5, 8, 3]
    assert plan.fewest_seeds_for_a_verdict(0.0625) == 6  # p must lie below alpha: 5 seeds reach 0.0625 exactly


@pytest.mark.parametrize("driver", ["orchestration.scaleout", "orchestration.executor"])
def test_make_repro_s_driver_loads_neither_scipy_nor_scikit_learn(subprocesses, driver):
    # ~2 s of start-up on every `make repro` and `make repro CLUSTER=…` (docs/speed.md); the
    # sweep's modules load them
    loaded = subprocess.run([sys.executable, "-c", f"import sys, {driver}; "
                             "print(sorted({'scipy', 'sklearn', 'orchestration.sweep'} & set(sys.modules)))"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert loaded == "[]\n"


def test_few_seeds_are_named_before_anything_runs():
    params = shipped_params()
    assert plan.few_seeds_warning(params) is None  # the shipped 10 seeds
    few = params.model_copy(update={"train": params.train.model_copy(update={"seeds": [0, 1, 2, 3, 4]})})
    assert "5 seeds can never give a significant verdict at alpha 0.05" in plan.few_seeds_warning(few, "s.yaml")
    assert "(the sign-flip test needs at least 6)" in plan.few_seeds_warning(few)


def test_the_map_cuts_a_band_at_the_range_of_a_difference_and_the_table_says_so():
    assert sweep_report.clip_to_difference_range([-2.186, -0.5], [1.626, 0.2]) == ([-1.0, -0.5], [1.0, 0.2])
    row = {"imbalance.ratio": 5, "experiment": "e", "weighted_vs_unweighted.worst_majority_recall.class": 6}
    for metric, _ in sweep_report.PANELS:
        row.update({f"weighted_vs_unweighted.{metric}.{k}": v for k, v in
                    (("mean", -0.28), ("ci_low", -0.5), ("ci_high", 0.1), ("p", 0.5), ("verdict", "x"))})
    assert "cuts its band" not in sweep_report.markdown([row], ["imbalance.ratio"])
    row["weighted_vs_unweighted.minority_recall.ci_low"] = -2.186
    assert "cuts its band at ±1" in sweep_report.markdown([row], ["imbalance.ratio"])


def test_a_sweep_row_whose_interval_excludes_0_without_a_verdict_says_why():
    row = {"imbalance.ratio": 5, "experiment": "e", "weighted_vs_unweighted.worst_majority_recall.class": 6}
    for metric, _ in sweep_report.PANELS:
        row.update({f"weighted_vs_unweighted.{metric}.{k}": v for k, v in
                    (("mean", 0.2), ("ci_low", 0.05), ("ci_high", 0.35), ("p", 0.5),
                     ("verdict", "no significant difference"))})  # 2 seeds: t-test passes, sign-flip p 0.5
    row["weighted_vs_unweighted.balanced_accuracy.verdict"] = "better"
    text = sweep_report.markdown([row], ["imbalance.ratio"])
    cells = next(line for line in text.splitlines() if line.startswith("| 5 |")).split(" | ")
    assert cells[1] == "+0.200 [+0.050, +0.350] no significant difference †" and cells[2].endswith("better")
    assert "† The interval excludes 0, yet the verdict is no significant difference: a verdict also needs the " \
           "exact sign-flip test below α, and with n seeds its p cannot fall below 2/2ⁿ" in text
    row["weighted_vs_unweighted.minority_recall.ci_low"] = -0.05
    assert "†" not in sweep_report.markdown([row], ["imbalance.ratio"])


def test_orchestration_reaches_dvc_only_through_the_adapter():
    """experiments.py is the one module that imports DVC or runs its command line."""
    for path in sorted((ROOT / "orchestration").glob("*.py")):
        if path.name == "experiments.py":
            continue
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert "dvc" not in imported, path.name
        assert "experiments.DVC" not in path.read_text() and '"dvc"' not in path.read_text(), path.name


# --- the README's sharing lines, and the way back ----------------------------------------------

def test_the_owner_s_run_trains_and_pushes_as_the_readme_says_and_leaves_git_status_clean(serial):
    """The owner's lines (tests/conftest.py, `serial`: the README's sharing lines, `make repro`
    serial; the progress lines of the default, parallel `make repro`: tests/test_scaleout.py)."""
    project, result, _ = serial
    assert ran_stages(result) == ["check_params", "compute_weights", "evaluate", "fetch", "frozen_features",
                                  "preprocess", "train_unweighted@0", "train_weighted@0"]
    assert "Use `dvc push` to send your updates to remote storage." in result.stdout
    assert git_status(project) == ""


def test_a_colleague_s_fresh_clone_following_the_readme_trains_nothing(serial, tmp_path):
    project, _, folder = serial
    run(tmp_path, "git", "clone", "-q", str(folder / "origin.git"), "colleague")
    clone = link_venv(tmp_path / "colleague")
    colleague = readme_block("sharing")[-1]
    result = subprocess.run(["bash", "-c", f"set -e\n{colleague}"], cwd=clone, env=env(), capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_stages(result) == [] and "No remote provided" not in result.stderr
    assert git_status(clone) == ""
    assert metrics_files(clone) == metrics_files(project)


def test_make_restore_goes_back_to_the_committed_run_from_the_run_cache(serial, tmp_path):
    project = clone_finished(serial[0], tmp_path / "owner")  # the owner's copy, cache and all
    committed = (project / "dvc.lock").read_text()
    experiment = dvc(project, "exp", "run", "-S", "weights.strategy=sqrt_inverse")  # applied to the workspace
    assert "train_weighted@0" in ran_stages(experiment) and git_status(project) != ""
    restored = make(project, "restore")
    assert ran_stages(restored) == []  # every stage: from DVC's caches
    assert (project / "dvc.lock").read_text() == committed
    assert git_status(project) == ""


def test_make_restore_after_a_seeds_edit_leaves_git_status_and_dvc_status_clean(project):
    """The README's way back after `make repro` with another train.seeds: the models of a seed
    the committed run does not train must not enter evaluate's hashes."""
    link_venv(project)
    set_params(project, {"train": {"seeds": [0, 1, 2]}})
    make(project, "repro", "JOBS=1")
    assert (project / "models/weighted/seed_2").is_dir()
    restored = make(project, "restore")
    assert ran_stages(restored) == []
    assert git_status(project) == ""
    assert not (project / "models/weighted/seed_2").exists()
    assert dvc(project, "status").stdout.strip() == "Data and pipelines are up to date."
    again = make(project, "repro", "JOBS=1")
    assert ran_stages(again) == [] and git_status(project) == ""
    assert "git add" not in restored.stdout + again.stdout  # dvc.lock is as committed: no advice to add it


def test_the_outputs_of_seeds_no_longer_trained_are_removed_and_only_those(tmp_path):
    for arm in ("unweighted", "weighted"):
        for seed in (0, 1, 6, 12):
            (tmp_path / "models" / arm / f"seed_{seed}").mkdir(parents=True)
            (tmp_path / "metrics/seconds" / arm).mkdir(parents=True, exist_ok=True)
            (tmp_path / "metrics/seconds" / arm / f"seed_{seed}.json").write_text("{}")
    (tmp_path / "models/weighted/seed_6/model.keras").write_bytes(b"x")
    removed = experiments.remove_stale_models([0, 1, 12], tmp_path)
    assert [str(p.relative_to(tmp_path)) for p in removed] == [
        "models/unweighted/seed_6", "metrics/seconds/unweighted/seed_6.json",
        "models/weighted/seed_6", "metrics/seconds/weighted/seed_6.json"]
    assert sorted(p.name for p in (tmp_path / "models/weighted").iterdir()) == ["seed_0", "seed_1", "seed_12"]
    assert sorted(p.name for p in (tmp_path / "metrics/seconds/weighted").iterdir()) == [
        "seed_0.json", "seed_1.json", "seed_12.json"]


DVC_OUTPUT = ["Running stage 'evaluate':\n", "Updating lock file 'dvc.lock'\n", "\n",
              "To track the changes with git, run:\n", "\n", "\tgit add dvc.lock reports/.gitignore\n", "\n",
              "To enable auto staging, run:\n", "\n", "\tdvc config core.autostage true\n",
              "Use `dvc push` to send your updates to remote storage.\n"]


def test_dvc_s_git_add_advice_is_given_only_when_a_file_it_names_differs_from_git_s(tmp_path, monkeypatch):
    named = []
    kept = list(experiments.without_git_advice(DVC_OUTPUT, named))
    assert kept == [DVC_OUTPUT[0], DVC_OUTPUT[1], DVC_OUTPUT[-1]] and named == ["dvc.lock", "reports/.gitignore"]
    monkeypatch.chdir(tmp_path)
    run(tmp_path, "git", "init", "-q")
    (tmp_path / "dvc.lock").write_text("stages: {}\n")
    run(tmp_path, "git", "add", "dvc.lock")
    assert experiments.git_add_advice(["dvc.lock"]) is None  # as git has it: nothing to add
    (tmp_path / "dvc.lock").write_text("stages: {a: {}}\n")
    assert experiments.git_add_advice([]) == "\nTo track the changes with git, run:\n\n\tgit add dvc.lock\n"


def test_make_sweep_s_map_is_ignored_by_git():
    ignored = run(ROOT, "git", "check-ignore", "sweep/sweep.png", "sweep/sweep.md", check=False)
    assert ignored.stdout.split() == ["sweep/sweep.png", "sweep/sweep.md"]


def test_right_after_a_temp_experiment_the_readme_s_compare_line_shows_it_and_a_typo_under_s_is_dvc_s_line(project):
    run(project, "git", "branch", "-m", "main")
    typo = dvc(project, "exp", "run", "--temp", "-S", "weights.stratgy=sqrt_inverse", check=False)
    # DVC refuses a key params.yaml lacks before any stage runs: its line, which the README quotes
    assert typo.returncode != 0 and "Could not override 'weights.stratgy'" in typo.stderr
    assert "`Could not override 'weights.stratgy'`" in README and git_status(project) == ""
    dvc(project, "exp", "run", "--temp", "--name", "strict", "-S", "evaluate.alpha=0.1")
    assert dvc(project, "metrics", "diff", "main").stdout == ""  # the workspace is still the committed run
    line = next(line for line in README.splitlines() if line.startswith("dvc exp diff main NAME"))
    shown = dvc(project, *line.split("#")[0].replace("NAME", "strict").split()[1:]).stdout
    assert re.search(r"metrics/comparison\.json\s+alpha\s+0\.05\s+0\.1", shown), shown


# --- the README itself -------------------------------------------------------------------------

def test_the_readme_stays_short():
    assert len(README.splitlines()) <= 250


def test_every_command_line_in_the_readme_fits_120_columns():
    blocks = re.findall(r"```(?:bash)?\n(.*?)```", README, re.S)
    wide = [line for block in blocks for line in block.splitlines() if len(line) > 120]
    assert wide == []


def test_a_share_s_trainings_count_only_those_that_ended():
    # a share of three (dvc repro --keep-going): one trained, one restored, one killed after it started
    log = ("Running stage 'train_unweighted@0':\n> python -m stages.train --arm unweighted --seed 0\n"
           "train_unweighted@0: saved models/unweighted/seed_0 (3.0 s to fit)\n"
           "Stage 'train_weighted@1' is cached - skipping run, checking out outputs\n"
           "Running stage 'train_weighted@0':\n> python -m stages.train --arm weighted --seed 0\n"
           "ERROR: failed to reproduce 'train_weighted@0': failed to run: python -m stages.train --arm weighted "
           "--seed 0, exited with -9\n")
    assert experiments.count_trainings(log) == (1, 1)
