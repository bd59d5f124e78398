"""The sweep file's validation, the plan (order, shards, groups, tasks), and the collector on constructed
experiment records with known differences. No training here (see test_scaleout.py)."""
import csv
import json
import os
import re
import subprocess

import numpy as np
import pytest
import yaml

from classweights import ranking
from orchestration import experiments, plan, sweep, sweep_report
from classweights.errors import UserError
from classweights.evaluation import LOGIT_ADJUSTED
from tools.sandbox import (MAKE, ROOT, committed_params, dvc, env, link_venv, make_project, merged,
                           without_seconds_columns)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return link_venv(make_project(tmp_path_factory.mktemp("sweep-input")))


def run_make(project, *args):
    return subprocess.run([*MAKE, *args], cwd=project, env=env(), capture_output=True, text=True)


def our_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip() and not re.match(r"make(\[\d+\])?: ", line)]


BAD_SWEEPS = {
    "unknown key": ({"grid": {"imbalance.ratoi": [1, 5]}}, "unknown key 'imbalance.ratoi'"),
    "rejected value": ({"grid": {"imbalance.ratio": [5, 0.5]}}, "imbalance.ratio = 0.5: Input should be greater"),
    "rejected fixed value": ({"fixed": {"weights.strategy": "focal"}, "grid": {"imbalance.ratio": [5]}},
                             "weights.strategy = 'focal'"),
    "empty list": ({"grid": {"imbalance.ratio": [5], "weights.strategy": []}},
                   "grid weights.strategy = []: give a non-empty list"),
    "duplicate point": ({"grid": [{"imbalance.ratio": [5, 20]}, {"imbalance.ratio": [5]}]},
                        "duplicate grid point imbalance.ratio=5 (the same params as imbalance.ratio=5)"),
    "same point spelt twice": ({"grid": [{"imbalance.ratio": [5], "weights.strategy": ["balanced"]},
                                         {"weights.strategy": ["balanced"], "imbalance.ratio": [5.0]}]},
                               "duplicate grid point imbalance.ratio=5.0 weights.strategy=\"balanced\" (the same "
                               "params as imbalance.ratio=5 weights.strategy=\"balanced\")"),
    "unknown section": ({"grid": {"imbalance.ratio": [5]}, "seeds": [1]}, "unknown section 'seeds'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SWEEPS))
def test_bad_sweep_file_names_the_file_key_and_value(tmp_path, case):
    content, expected = BAD_SWEEPS[case]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(committed_params()))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(content))
    with pytest.raises(UserError) as caught:
        sweep.read_sweep(tmp_path / "bad.yaml", tmp_path / "params.yaml")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'bad.yaml'}: ") and expected in message and "\n" not in message


@pytest.mark.parametrize("parse, setting, expected", [
    (plan.parse_jobs, "0", "JOBS=0: must be a whole number >= 1"),
    (plan.parse_jobs, "abc", "JOBS=abc: must be a whole number >= 1"),
    (plan.parse_jobs, "-1", "JOBS=-1: must be a whole number >= 1"),
    (plan.parse_shard, "3/2", "SHARD=3/2: k must lie between 1 and N"),
    (plan.parse_shard, "0/2", "SHARD=0/2: k must lie between 1 and N"),
    (plan.parse_shard, "x", "SHARD=x: must be k/N"),
    (plan.parse_shard, "1/2/3", "SHARD=1/2/3: must be k/N"),
])
def test_bad_jobs_or_shard_names_the_setting_and_what_is_allowed(parse, setting, expected):
    with pytest.raises(UserError) as caught:
        parse(setting)
    assert str(caught.value).startswith(expected)


def test_side_by_side_trainings_on_tensorflow_s_default_threads_are_warned_of():
    assert "JOBS=2" in plan.oversubscription_warning(2, 0)
    assert plan.oversubscription_warning(1, 0) is None  # one training may take every core
    assert plan.oversubscription_warning(2, 1) is None


def test_good_jobs_and_shard_settings():
    assert plan.parse_jobs("3") == 3 and plan.parse_jobs("") == os.cpu_count()
    assert plan.parse_shard("2/3") == (2, 3) and plan.parse_shard("") == (1, 1)


@pytest.mark.parametrize("target, setting, expected", [
    ("sweep", "SWEEP=bad.yaml", "error: bad.yaml: unknown key 'imbalance.ratoi'"),
    ("repro", "JOBS=abc", "error: JOBS=abc: must be a whole number >= 1"),
])
def test_bad_input_through_make_is_one_line_and_runs_nothing(subprocesses, project, target, setting, expected):
    (project / "bad.yaml").write_text(yaml.safe_dump(BAD_SWEEPS["unknown key"][0]))
    result = run_make(project, target, setting)
    assert result.returncode != 0
    lines = our_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(expected) and "Traceback" not in result.stderr, result.stderr
    assert not (project / "dvc.lock").exists()  # not one stage ran


def test_the_shipped_sweep_files_are_valid(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(committed_params()))
    fixed, points = sweep.read_sweep(ROOT / "sweep.yaml", tmp_path / "params.yaml")
    assert fixed["data.source"] == "mnist-sample" and len(points) == 3 * 2
    _, full = sweep.read_sweep(ROOT / "sweep-fashion.yaml", tmp_path / "params.yaml")
    assert len(full) == 5 * 3 + 2 * 3
    # the remedies: 8 on the shipped data, the same 8 in 2 settings at full size, each setting's
    # points sharing one unweighted arm
    for path, settings in (("sweep-remedies.yaml", 1), ("sweep-remedies-fashion.yaml", 2)):
        _, remedies = sweep.read_sweep(ROOT / path, tmp_path / "params.yaml")
        assert len(remedies) == 8 * settings and len({sweep.unweighted_group(p) for p in remedies}) == settings
        assert {p["loss.name"] for p in remedies} == {"cross_entropy", "focal", "ldam", "logit_adjusted"}


GRID = [{"imbalance.ratio": r, "weights.strategy": s} for r in (1, 5, 20) for s in ("balanced", "sqrt_inverse")]


def test_run_order_trains_each_ratio_once_before_the_other_strategies():
    ordered = plan.run_order(GRID)
    assert [(p["imbalance.ratio"], p["weights.strategy"]) for p in ordered] == [
        (1, "balanced"), (5, "balanced"), (20, "balanced"), (1, "sqrt_inverse"), (5, "sqrt_inverse"),
        (20, "sqrt_inverse")]


def test_points_finished_anywhere_are_left_out_and_a_shard_keeps_whole_groups():
    done = {sweep.point_label(GRID[0]), sweep.point_label(GRID[3])}  # ratio 1 balanced, ratio 5 sqrt_inverse
    points, missing = plan.missing_points(GRID, done)
    assert points == plan.run_order(GRID) and len(missing) == 4 and not done & set(map(sweep.point_label, missing))
    points, missing = plan.missing_points(GRID, done, (2, 2))  # ratio 5's group
    assert [(p["imbalance.ratio"], p["weights.strategy"]) for p in missing] == [(5, "balanced")]


def test_with_idle_workers_a_group_s_arm_trains_first_then_its_points_side_by_side():
    fixed = {"train.epochs": 2}
    ratio_5 = [p for p in plan.run_order(GRID) if p["imbalance.ratio"] == 5]
    (arm,) = plan.group_tasks(fixed, ratio_5, seeds=3, arm_task=True)
    assert arm.name == f"unweighted arm of {sweep.point_name(ratio_5[0])}" and arm.kind == "unweighted arm"
    assert arm.options == ("-S", "train.epochs=2", "-S", "imbalance.ratio=5", "-S", 'weights.strategy="balanced"')
    assert arm.trainings == 3 and [t.trainings for t in arm.later] == [6, 6]
    assert [t.name for t in arm.later] == [sweep.point_name(p) for p in ratio_5]  # every point, the first too
    (lone,) = plan.group_tasks(fixed, ratio_5[:1], seeds=3, arm_task=True)  # one point: it trains the arm itself
    assert (lone.name, lone.kind, lone.later) == (sweep.point_name(ratio_5[0]), "point", ())
    # workers busy anyway: the first point trains the arm, the others wait for it
    (first,) = plan.group_tasks(fixed, ratio_5, seeds=3, arm_task=False)
    assert first.name == sweep.point_name(ratio_5[0])
    assert [t.name for t in first.later] == [sweep.point_name(ratio_5[1])]
    # 3 groups of 2: arm tasks of their own only with a worker per grouped point
    seeds = {sweep.point_name(p): 1 for p in GRID}
    assert [t.kind for t in plan.sweep_tasks({}, GRID, seeds, workers=6)] == ["unweighted arm"] * 3
    assert [t.kind for t in plan.sweep_tasks({}, GRID, seeds, workers=5)] == ["point"] * 3


def test_what_starts_after_a_task_and_after_a_failed_unweighted_arm():
    points = tuple(plan.Task(f"p{k}", "point", 2) for k in range(3))
    arm = plan.Task("arm", "unweighted arm", 1, later=points)
    assert [t.name for t in plan.all_tasks([arm, plan.Task("q", "point", 2)])] == ["arm", "p0", "p1", "p2", "q"]
    assert plan.after(arm) == points  # the arm trained: every point at once, each restores it
    # the arm failed: the first point trains it, the others restore it once that point has ended
    (first,) = plan.after(arm, failed=True)
    assert (first.name, first.later) == ("p0", points[1:])
    assert plan.after(points[0], failed=True) == ()


def test_local_trainings_are_dealt_one_task_per_worker_and_a_cluster_s_one_task_each():
    changed = [f"train_{arm}@{seed}" for arm in ("unweighted", "weighted") for seed in range(3)]
    local = plan.training_tasks(changed, shares=4)
    assert [(t.name, t.targets, t.trainings) for t in local] == [
        ("share 1 of 4", ("train_unweighted@0", "train_weighted@1"), 2),
        ("share 2 of 4", ("train_unweighted@1", "train_weighted@2"), 2),
        ("train_unweighted@2", ("train_unweighted@2",), 1), ("train_weighted@0", ("train_weighted@0",), 1)]
    assert sorted(stage for t in local for stage in t.targets) == sorted(changed)  # each once
    assert [t.targets for t in plan.training_tasks(changed[:2], shares=8)] == [(changed[0],), (changed[1],)]
    assert [t.name for t in plan.training_tasks(changed)] == changed  # a cluster: a task per training
    assert plan.training_tasks([], shares=2) == []


def test_a_task_runs_dvc_in_its_copy_with_the_shared_cache_locally_and_the_remotes_on_a_cluster():
    arm, point, training = (plan.Task("a", "unweighted arm", 1, options=("-S", "x=1")),
                            plan.Task("p", "point", 2, options=("-S", "x=1")),
                            plan.training_tasks(["train_w@0", "train_u@1"], shares=1)[0])
    share = ["dvc", "cache", "dir", "--local", "/c"]  # the workspace's cache, run cache included
    commands = experiments.task_commands
    assert commands(arm, shared_cache="/c") == [share, ["dvc", "exp", "run", "-S", "x=1", "train_unweighted"]]
    assert commands(point, shared_cache="/c") == [share, ["dvc", "exp", "run", "--name", "p", "-S", "x=1"],
                                                  ["dvc", "exp", "push", "--no-cache", "origin", "p"]]
    # a failed training of a share stops none of the others (--keep-going)
    assert commands(training, shared_cache="/c") == [share, ["dvc", "repro", "--keep-going", "train_w@0", "train_u@1"]]
    (alone,) = plan.training_tasks(["train_w@0"])
    assert commands(alone, shared_cache="/c") == [share, ["dvc", "repro", "train_w@0"]]
    assert commands(arm) == [["dvc", "exp", "run", "--pull", "-S", "x=1", "train_unweighted"],
                             ["dvc", "push", "--run-cache", "train_unweighted"]]
    assert commands(point)[1] == ["dvc", "exp", "push", "--run-cache", "origin", "p"]
    assert commands(training) == [["dvc", "repro", "--pull", "--keep-going", "train_w@0", "train_u@1"],
                                  ["dvc", "push", "--run-cache", "train_w@0", "train_u@1"]]


def test_trainings_to_run_are_the_changed_training_stages_and_those_no_cache_holds():
    status = {"evaluate": [{"changed deps": {}}], "train_weighted@0": [{"changed outs": {"models/w0": "not in cache"}}],
              "train_unweighted@1": [{"changed deps": {"data/x": "modified"}}], "train_weighted@1": ["always changed"]}
    assert plan.trainings_to_run(status) == (["train_unweighted@1", "train_weighted@0", "train_weighted@1"],
                                             ["train_weighted@0"])


def test_shards_split_by_ratio_and_cover_the_grid_once():
    ordered = plan.run_order(GRID)
    first, second = plan.shard(ordered, 1, 2), plan.shard(ordered, 2, 2)
    assert {p["imbalance.ratio"] for p in first} == {1, 20} and {p["imbalance.ratio"] for p in second} == {5}
    assert sorted(map(sweep.point_label, first + second)) == sorted(map(sweep.point_label, GRID))


def test_set_options_keep_types_through_dvc_s_override_syntax():
    assert sweep.set_options({"imbalance.ratio": 5, "weights.strategy": "balanced", "train.seeds": [0, 1]}) == [
        "-S", "imbalance.ratio=5", "-S", 'weights.strategy="balanced"', "-S", "train.seeds=[0, 1]"]


def _comparison(gain, low, high, verdict, worst_class=7):
    block = {"mean": gain, "ci_low": low, "ci_high": high, "p": 0.01, "verdict": verdict}
    blocks = {m: dict(block) for m in ("accuracy", "balanced_accuracy", "macro_f1", "minority_recall")}
    blocks["balanced_accuracy"]["mean"] = gain / 2
    blocks["worst_majority_recall"] = {"class": worst_class, "mean": -gain / 4, "ci_low": -0.1, "ci_high": 0.0,
                                       "p": 0.2, "verdict": "no significant difference"}
    return {"alpha": 0.05, "weighted_vs_unweighted": blocks}


def _arm(accuracy):
    values = {"accuracy": accuracy, "loss": 1.0, "balanced_accuracy": accuracy, "macro_f1": accuracy,
              "minority_recall": accuracy / 2}
    return {"mean": values, "sd": {k: 0.01 for k in values}}


def test_collector_writes_one_row_per_finished_point_from_matching_experiments(tmp_path):
    base = committed_params()
    fixed = {"data.source": "mnist-sample"}
    points = [{"imbalance.ratio": r, "weights.strategy": "balanced"} for r in (1, 5, 20)]
    gains = {1: (0.01, -0.02, 0.04, "no significant difference"), 5: (0.2, 0.1, 0.3, "better"),
             20: (0.4, 0.3, 0.5, "better")}
    experiments = [{"name": f"exp-{r}", "params": sweep.apply_overrides(base, {**fixed, **p}),
                    "metrics": {"comparison": _comparison(*gains[r]), "unweighted": _arm(0.8), "weighted": _arm(0.7),
                                "logit_adjusted": _arm(0.75)}}
                   for r, p in zip((1, 5, 20), points)]
    # an experiment of another setting, and one point (ratio 20) left unfinished: neither is drawn
    stray = {**experiments[0], "name": "other", "params": sweep.apply_overrides(base, {"train.epochs": 3})}
    matched = sweep.match_points(base, fixed, points, [stray, *experiments[:2]])
    assert [m["name"] for m in matched] == ["exp-1", "exp-5"]
    rows = sweep_report.sweep_rows(points, matched)
    sweep_report.write_report(rows, ["imbalance.ratio", "weights.strategy"], out=tmp_path)
    with open(tmp_path / "sweep.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["imbalance.ratio"], r["experiment"]) for r in table] == [("1", "exp-1"), ("5", "exp-5")]
    five = table[1]
    assert float(five["weighted_vs_unweighted.minority_recall.mean"]) == 0.2
    assert float(five["weighted_vs_unweighted.minority_recall.ci_low"]) == 0.1
    assert five["weighted_vs_unweighted.minority_recall.verdict"] == "better"
    assert float(five["weighted_vs_unweighted.balanced_accuracy.mean"]) == 0.1
    assert five["weighted_vs_unweighted.worst_majority_recall.class"] == "7"
    assert float(five["weighted_vs_unweighted.worst_majority_recall.mean"]) == -0.05
    assert float(five["unweighted.mean.accuracy"]) == 0.8 and float(five["weighted.sd.macro_f1"]) == 0.01
    assert float(five["logit_adjusted.mean.accuracy"]) == 0.75  # the post-hoc arm's own metrics too
    assert five["weighted_vs_logit_adjusted.accuracy.mean"] == ""  # a comparison not in the file: empty
    md = (tmp_path / "sweep.md").read_text()
    assert "| 5 | balanced | cross-entropy + balanced weights (loss) | +0.200 [+0.100, +0.300] better |" in md
    assert ("- cross-entropy + balanced weights (loss): the minority-recall gain is significant from "
            "imbalance.ratio = 5 on") in md
    assert "Intervals are 95% CIs" in md
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_significance_starts_where_every_larger_ratio_is_significant():
    rows = [{"imbalance.ratio": r, "weighted_vs_unweighted.minority_recall.verdict": v,
             **{f"weighted_vs_unweighted.minority_recall.{s}": 0.1 for s in ("mean", "ci_low", "ci_high")}}
            for r, v in ((1, "better"), (3, "no significant difference"), (10, "better"), (30, "better"))]
    assert "from imbalance.ratio = 10 on" in sweep_report.significance_sentence("balanced", rows)
    rows[-1]["weighted_vs_unweighted.minority_recall.verdict"] = "worse"
    assert "not significant at the last imbalance.ratio" in sweep_report.significance_sentence("balanced", rows)


def test_headline_columns_read_every_arm_and_pair():
    metrics = {"comparison": json.loads(json.dumps(_comparison(0.2, 0.1, 0.3, "better")))}
    metrics["comparison"]["logit_adjusted_vs_unweighted"] = metrics["comparison"]["weighted_vs_unweighted"]
    metrics["logit_adjusted"] = _arm(0.9)
    columns = sweep_report.headline_columns(metrics)
    assert columns["logit_adjusted_vs_unweighted.minority_recall.p"] == 0.01
    assert columns["logit_adjusted.mean.accuracy"] == 0.9
    assert columns["weighted_vs_logit_adjusted.accuracy.mean"] is None


def _rows(points, alpha=0.05):
    """Map rows for points, with made-up gains that grow along the points."""
    rows = []
    for i, point in enumerate(points):
        verdict = "better" if i else "no significant difference"
        metrics = {"comparison": {**_comparison(0.1 * i, 0.1 * i - 0.05, 0.1 * i + 0.05, verdict), "alpha": alpha},
                   "unweighted": _arm(0.8), "weighted": _arm(0.7)}
        rows.append({**point, "experiment": f"exp-{i}", **sweep_report.headline_columns(metrics)})
    return rows


def test_a_grid_over_any_key_draws_its_own_x_axis_and_labels_intervals_with_its_alpha(tmp_path):
    # a grid over weights.strategy alone: no imbalance.ratio anywhere (it used to end in a KeyError)
    strategies = [{"weights.strategy": s} for s in ("balanced", "sqrt_inverse", "effective_number")]
    rows = _rows(strategies, alpha=0.1)
    assert sweep_report.x_key(rows, ["weights.strategy"]) == "weights.strategy"
    sweep_report.write_report(rows, ["weights.strategy"], out=tmp_path)
    md = (tmp_path / "sweep.md").read_text()
    assert "Intervals are 90% CIs" in md and "95%" not in md
    assert "minority-recall gain is significant from" not in md  # remedies side by side: no x along which to read
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a numeric key is the x-axis before a categorical one, a setting key before a remedy key
    mixed = [{"loss.name": "focal", "loss.focal_gamma": g, "imbalance.ratio": r} for g in (0.5, 2) for r in (5, 20)]
    assert sweep_report.x_key(mixed, ["loss.name", "loss.focal_gamma", "imbalance.ratio"]) == "imbalance.ratio"
    assert sweep_report.x_key(mixed, ["loss.name", "loss.focal_gamma"]) == "loss.focal_gamma"
    lines = sweep_report._lines(_rows(mixed), ["loss.name", "loss.focal_gamma", "imbalance.ratio"], "imbalance.ratio")
    assert list(lines) == ["name=focal, focal_gamma=0.5", "name=focal, focal_gamma=2"]
    assert sweep_report.interval_label([{"alpha": 0.05}, {"alpha": 0.01}]) == "CI at each point's evaluate.alpha"


def test_an_experiment_s_files_give_every_arm_s_headline_and_per_seed_values(tmp_path):
    from classweights.files import write_json

    seeds = {"0": {"balanced_accuracy": 0.5, "minority_recall": 0.2, "accuracy": 0.6}}
    for arm in ("unweighted", "weighted", "logit_adjusted"):
        write_json(tmp_path / "metrics" / f"{arm}.json", _arm(0.7))
        write_json(tmp_path / "metrics" / "details" / f"{arm}.json", {"mean": {}, "std": {}, "seeds": seeds})
    write_json(tmp_path / "metrics" / "comparison.json", _comparison(0.2, 0.1, 0.3, "better"))
    files = {path: (tmp_path / path).read_text() for path in sweep.EXPERIMENT_FILES if (tmp_path / path).exists()}
    assert len(files) == 1 + 3 + 3  # evaluate's comparison, each arm's headline and details
    found = sweep.experiment_metrics(files)
    assert sorted(found["metrics"]) == ["comparison", "logit_adjusted", "unweighted", "weighted"]
    assert found["per_seed"]["logit_adjusted"] == {"0": {"balanced_accuracy": 0.5, "minority_recall": 0.2}}


def _remedy_records(base, ratio, seeds, gaps):
    """One setting's experiments (imbalance.ratio = ratio): three remedies whose balanced accuracy
    is each seed's level plus a fixed gap; the seed levels differ a lot, the gaps do not."""
    level = {str(s): 0.5 + 0.03 * s for s in seeds}
    remedies = {"focal": {"loss.name": "focal", "weights.apply": "none"},
                "balanced": {"loss.name": "cross_entropy"},
                "ldam": {"loss.name": "ldam"}}

    def arm(gap, extra=()):
        return {s: {"balanced_accuracy": v + gap, "minority_recall": 0.3 + v - 2 * gap}
                for s, v in [*level.items(), *extra]}

    records = []
    for name, overrides in remedies.items():
        point = {"imbalance.ratio": ratio, **overrides}
        extra = [("99", 0.0)] if name == "focal" else []  # a seed only one experiment has: not shared
        records.append({"name": f"{name}-{ratio}", "point": point,
                        "params": sweep.apply_overrides(base, point),
                        "per_seed": {"unweighted": arm(0.0), "logit_adjusted": arm(gaps["post-hoc"]),
                                     "weighted": arm(gaps[name], extra)}})
    return records


def test_the_best_remedy_of_each_setting_is_tested_paired_against_the_runner_up_holm_adjusted():
    base = committed_params()
    gaps = {"focal": 0.07, "balanced": 0.02, "ldam": 0.015, "post-hoc": 0.01}
    six = _remedy_records(base, 10, range(6), gaps)
    ten = _remedy_records(base, 100, range(10), gaps)
    rows = sweep.best_remedies([*six, *ten])
    by = {(r["imbalance.ratio"], r["metric"]): r for r in rows}
    assert sorted(by) == [(10, "balanced_accuracy"), (10, "minority_recall"), (100, "balanced_accuracy"),
                          (100, "minority_recall")]
    six_ba = by[(10, "balanced_accuracy")]
    assert (six_ba["best"], six_ba["runner_up"]) == ("focal γ=1", "cross-entropy + balanced weights (loss)")
    assert six_ba["remedies"] == 5 and six_ba["seeds"] == 6  # unweighted, post-hoc and three remedies; seed 99 left out
    assert six_ba["difference"] == pytest.approx(0.05)
    # every seed moves by +0.05: the exact sign-flip p is 2/2^6; Holm over the 4 comparisons of the best
    # with every other remedy multiplies the smallest of four equal p-values by 4: 0.125, not significant
    assert six_ba["p_holm"] == pytest.approx(4 * 2 / 2 ** 6) and six_ba["beats_runner_up"] is False
    ten_ba = by[(100, "balanced_accuracy")]
    assert ten_ba["p_holm"] == pytest.approx(4 * 2 / 2 ** 10) and ten_ba["beats_runner_up"] is True
    # minority recall falls with the gap: the unweighted arm is best there, the post-hoc arm the runner-up
    ten_mr = by[(100, "minority_recall")]
    assert (ten_mr["best"], ten_mr["runner_up"]) == ("unweighted (cross-entropy)", "post-hoc logit adjustment (τ = 1)")
    assert ten_mr["difference"] == pytest.approx(0.02)
    md = sweep_report.best_markdown(rows)
    assert "| 10 | balanced_accuracy | focal γ=1 (0.645) | cross-entropy + balanced weights (loss) (0.595) | " \
           "+0.050 [+0.050, +0.050] | 0.125 | no |" in md


def test_the_remedies_sweep_draws_a_map_from_its_points_without_training(tmp_path):
    # grids of one sweep that vary different keys: each point completed with what it runs with
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(committed_params()))
    fixed, points = sweep.read_sweep(ROOT / "sweep-remedies.yaml", tmp_path / "params.yaml")
    base = committed_params()
    points = sweep.complete_points(base, fixed, points)
    assert {p["weights.defer_epoch"] for p in points} == {1, 9} and all(len(p) == len(points[0]) for p in points)
    seeds = {str(s): {"balanced_accuracy": 0.5 + 0.01 * s, "minority_recall": 0.3} for s in range(6)}
    experiments = [{"name": f"exp-{i}", "params": sweep.apply_overrides(base, {**fixed, **p}),
                    "metrics": {"comparison": _comparison(0.01 * i, -0.01, 0.02 * i, "better")},
                    "per_seed": {"unweighted": seeds, "weighted": {s: {m: v + 0.001 * i for m, v in values.items()}
                                                                   for s, values in seeds.items()}}}
                   for i, p in enumerate(points)]
    records = sweep.match_points(base, fixed, points, experiments)
    rows = sweep_report.sweep_rows(points, records)
    assert [r["remedy"] for r in rows][:3] == ["cross-entropy + balanced weights (loss)",
                                               "cross-entropy + balanced weights (loss), deferred from epoch 9",
                                               "cross-entropy + balanced weights (sampling)"]
    best = sweep.best_remedies(records)
    sweep_report.write_report(rows, sweep.varied_keys(points), out=tmp_path, best=best)
    assert [(r["metric"], r["best"]) for r in best] == [
        ("balanced_accuracy", "LDAM m=0.5 s=30 + effective_number weights (loss), deferred from epoch 9"),
        ("minority_recall", "LDAM m=0.5 s=30 + effective_number weights (loss), deferred from epoch 9")]
    assert best[0]["remedies"] == 9  # the 8 remedy arms and the shared unweighted arm
    assert "## The best remedy of each setting" in (tmp_path / "sweep.md").read_text()
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "best.csv").read_text().startswith("metric,best,best_mean,runner_up")


def test_with_one_seed_the_best_remedy_is_named_but_never_said_to_beat_the_runner_up():
    gaps = {"focal": 0.07, "balanced": 0.02, "ldam": 0.015, "post-hoc": 0.01}
    rows = sweep.best_remedies(_remedy_records(committed_params(), 10, range(1), gaps))
    assert [(r["best"], r["seeds"], r["beats_runner_up"], r["p_holm"]) for r in rows][0] == ("focal γ=1", 1, False, None)
    assert "+0.050 (no interval with one seed)" in sweep_report.best_markdown(rows)


def test_a_tuned_tau_is_a_post_hoc_remedy_of_its_own_beside_a_fixed_one():
    per_seed = {LOGIT_ADJUSTED: {"0": {"balanced_accuracy": 0.5}}}
    records = [{"name": f"exp-{tau}", "params": merged(committed_params(), {"evaluate": {"logit_adjustment_tau": tau}}),
                "per_seed": per_seed} for tau in ("tuned", 1.0)]
    assert set(ranking.remedies_of(records)) == {"post-hoc logit adjustment (τ tuned on validation)",
                                                 "post-hoc logit adjustment (τ = 1)"}


def test_a_sweep_with_no_finished_point_still_writes_an_empty_map(tmp_path):
    sweep_report.write_report([], ["data.path"], out=tmp_path)  # every point failed: the map says so, no crash
    assert (tmp_path / "sweep.csv").read_text().strip() == "experiment"
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_remedies_at_two_settings_are_one_row_each_and_each_setting_s_post_hoc_arm_follows_them():
    def row(profile, ratio, remedy, gain, post_hoc):
        comparison = _comparison(gain, gain - 0.01, gain + 0.01, "better")
        comparison["logit_adjusted_vs_unweighted"] = _comparison(post_hoc, post_hoc - 0.02, post_hoc + 0.02,
                                                                 "better")["weighted_vs_unweighted"]
        return {"imbalance.profile": profile, "imbalance.ratio": ratio, "loss.name": remedy, "remedy": remedy,
                **sweep_report.headline_columns({"comparison": comparison})}

    rows = [row("longtail", 100, "focal", 0.10, 0.30), row("longtail", 100, "ldam", 0.20, 0.30),
            row("step", 10, "focal", 0.05, 0.40), row("step", 10, "ldam", 0.06, 0.40)]
    varied = ["imbalance.profile", "imbalance.ratio", "loss.name"]
    entries = sweep_report.remedy_entries(rows, varied)
    assert [label for label, _, _ in entries] == [
        "profile=longtail, ratio=100, focal", "profile=longtail, ratio=100, ldam",
        "profile=longtail, ratio=100, post-hoc logit adjustment",
        "profile=step, ratio=10, focal", "profile=step, ratio=10, ldam",
        "profile=step, ratio=10, post-hoc logit adjustment"]
    # the post-hoc rows read the logit-adjusted arm's own comparison, not the remedy's
    assert [row[f"{pair}.minority_recall.mean"] for _, row, pair in entries] == [0.10, 0.20, 0.30, 0.05, 0.06, 0.40]


def test_the_map_says_which_machines_made_its_experiments_and_warns_when_they_differ_in_kind():
    from classweights.machine import describe

    zen3 = describe(1, "model name\t: AMD EPYC\ncpu family\t: 25\nmodel\t: 1\nflags\t: avx avx2 fma\n")
    zen4 = describe(1, "model name\t: AMD EPYC\ncpu family\t: 25\nmodel\t: 17\nflags\t: avx avx2 avx512f fma\n")
    one = sweep_report.machines_markdown([zen3, zen3])
    assert one.strip().startswith("Machine: AMD EPYC (cpu family 25, model 1) with avx, avx2, fma;")
    assert one.count("Machine: ") == 1 and "experiments)" not in one and "different kinds" not in one
    mixed = sweep_report.machines_markdown([zen3, zen4, zen4, None])
    assert mixed.count("Machine: ") == 3
    assert "model 1) with avx, avx2, fma;" in mixed and "(1 experiment)." in mixed
    assert "model 17) with avx, avx2, avx512f, fma;" in mixed and "(2 experiments)." in mixed
    assert "Machine: not recorded (made before runs recorded it) (1 experiment)." in mixed
    assert "machines of different kinds" in mixed
    assert sweep_report.machines_markdown([]) == ""


def test_every_remedy_of_a_setting_is_ranked_on_the_seeds_they_share_with_its_mean_and_sd():
    gaps = {"focal": 0.07, "balanced": 0.02, "ldam": 0.015, "post-hoc": 0.01}
    rows = sweep.remedy_rankings(_remedy_records(committed_params(), 10, range(4), gaps))
    assert [(r["rank"], r["remedy"]) for r in rows] == [
        (1, "focal γ=1"), (2, "cross-entropy + balanced weights (loss)"),
        (3, "LDAM m=0.5 s=30 + balanced weights (loss)"),
        (4, "post-hoc logit adjustment (τ = 1)"), (5, "unweighted (cross-entropy)")]
    # seed levels 0.50, 0.53, 0.56, 0.59 (focal's extra seed 99 is not shared, so not counted)
    levels = [0.5, 0.53, 0.56, 0.59]
    focal = rows[0]
    assert focal["seeds"] == 4 and focal["imbalance.ratio"] == 10
    assert focal["balanced_accuracy.mean"] == pytest.approx(0.545 + 0.07)
    assert focal["balanced_accuracy.sd"] == pytest.approx(np.std(levels, ddof=1))  # n − 1, not n
    assert focal["minority_recall.mean"] == pytest.approx(0.3 + 0.545 - 0.14)
    md = sweep_report.ranking_markdown(rows)
    assert f"| 10 | 1 | focal γ=1 | 0.615 ± {np.std(levels, ddof=1):.3f} | 0.705 ± " in md


def test_remedies_at_a_few_settings_get_no_along_the_axis_sentences():
    def row(profile, ratio, remedy):
        return {"imbalance.profile": profile, "imbalance.ratio": ratio, "loss.name": remedy, "remedy": remedy,
                "experiment": f"e-{profile}-{remedy}",
                **sweep_report.headline_columns({"comparison": _comparison(0.1, 0.05, 0.15, "better")})}

    varied = ["imbalance.profile", "imbalance.ratio", "loss.name"]
    few = [row("longtail", 100, "focal"), row("longtail", 100, "ldam"), row("step", 10, "focal")]
    assert "is significant from" not in sweep_report.markdown(few, varied)
    along = [row("step", 10, "focal"), row("step", 30, "focal")]  # one line of two points: a sentence
    assert "the minority-recall gain is significant from imbalance.ratio = 10 on" in sweep_report.markdown(
        along, varied)


def test_the_map_and_the_ranking_carry_the_minority_precision_change_and_each_remedy_s_seconds(tmp_path):
    records = _remedy_records(committed_params(), 10, range(4), {"focal": 0.07, "balanced": 0.02, "ldam": 0.015,
                                                                  "post-hoc": 0.01})
    for k, record in enumerate(records):
        for by_seed in record["per_seed"].values():
            for s, values in by_seed.items():
                values["minority_precision"] = 0.9 - 0.01 * int(s)
        record["metrics"] = {"training_seconds": {"unweighted": {"mean": 10.0}, "weighted": {"mean": 20.0 + k}}}
    rows = sweep.remedy_rankings(records)
    by_name = {r["remedy"]: r for r in rows}
    # each remedy arm its own experiment's seconds; the unweighted and post-hoc arms the unweighted trainings'
    assert by_name["focal γ=1"]["seconds"] == 20.0 and by_name["LDAM m=0.5 s=30 + balanced weights (loss)"]["seconds"] == 22.0
    assert by_name["post-hoc logit adjustment (τ = 1)"]["seconds"] == by_name["unweighted (cross-entropy)"]["seconds"] == 10
    assert by_name["focal γ=1"]["minority_precision.mean"] == pytest.approx(0.885)  # seeds 0-3
    md = sweep_report.ranking_markdown(rows)
    assert "| minority precision | seconds per training | seeds |" in md
    assert f"| 0.885 ± {np.std([0.9, 0.89, 0.88, 0.87], ddof=1):.3f} | 20.0 | 4 |" in md

    # the map: the minority-precision change per point, and each arm's seconds in the CSV
    comparison = _comparison(0.2, 0.1, 0.3, "better")
    comparison["weighted_vs_unweighted"]["minority_precision"] = {"mean": -0.05, "ci_low": -0.08, "ci_high": -0.02,
                                                                  "p": 0.01, "verdict": "worse"}
    metrics = {"comparison": comparison, "unweighted": _arm(0.8), "weighted": _arm(0.7),
               "training_seconds": {"unweighted": {"mean": 10.0}, "weighted": {"mean": 12.5}}}
    metrics["unweighted"]["mean"]["train_accuracy"], metrics["weighted"]["mean"]["train_accuracy"] = 0.99, 0.97
    row = {"imbalance.ratio": 10, "experiment": "e", **sweep_report.headline_columns(metrics)}
    older = {"imbalance.ratio": 20, "experiment": "f", **sweep_report.headline_columns({"comparison": _comparison(
        0.2, 0.1, 0.3, "better")})}  # a run from before precision and seconds were measured
    assert row["weighted.seconds"] == 12.5 and older["weighted.seconds"] is None
    md = sweep_report.markdown([row, older], ["imbalance.ratio"])
    assert ("| worst majority recall change (class) | minority-precision change | training-split accuracy "
            "(unweighted → remedy) | experiment |") in md
    assert "| -0.050 [-0.080, -0.020] worse | 0.990 → 0.970 | e |" in md and "| – | – | f |" in md
    # two runs of the same points differ only in the seconds: the comparison the reproducibility tests make
    slower = {**row, "weighted.seconds": 30.0}
    for rows_, out in (([row], tmp_path / "a"), ([slower], tmp_path / "b")):
        sweep_report.write_report(rows_, ["imbalance.ratio"], out=out, ranked=sweep.remedy_rankings(records))
    assert (tmp_path / "a/sweep.csv").read_bytes() != (tmp_path / "b/sweep.csv").read_bytes()
    assert without_seconds_columns(tmp_path / "a/sweep.csv") == without_seconds_columns(tmp_path / "b/sweep.csv")
    ranked_faster = sweep.remedy_rankings([{**r, "metrics": {"training_seconds": {}}} for r in records])
    sweep_report.write_report([row], ["imbalance.ratio"], out=tmp_path / "c", ranked=ranked_faster)
    a, c = (tmp_path / "a/sweep.md").read_text(), (tmp_path / "c/sweep.md").read_text()
    assert a != c and without_seconds_columns(tmp_path / "a/sweep.md") == without_seconds_columns(tmp_path / "c/sweep.md")


def test_the_plan_is_pure_no_process_no_dvc_no_other_orchestration_module():
    import ast

    tree = ast.parse((ROOT / "orchestration/plan.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"hashlib", "json", "os", "re", "dataclasses", "classweights.errors", "classweights.paths"}
