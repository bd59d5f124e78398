"""Runs on a real Dask cluster at tiny size: a `dask scheduler` and two `dask worker` processes
(one thread each, their own scratch directories) on 127.0.0.1, a bare git origin and a
local-directory DVC remote, driven through `make sweep CLUSTER=…` and `make repro CLUSTER=…`."""
import csv
import re
import subprocess
import time

import psutil
import pytest
import yaml

from tests.test_scaleout import tiny_sweep_origin, training
from tools.sandbox import (MAKE, LocalCluster, clone, dvc, env, lock_text, make, metrics_files, run,
                           without_seconds_columns)


@pytest.fixture(scope="module")
def cluster(subprocesses, tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("dask"), workers=2)
    yield cluster
    cluster.close()


# Two strategies at one ratio: their unweighted arm is trained once, by a task of its own, then
# the two points run side by side, one per worker (so a killed worker's point moves to the other)
PAIR_SWEEP = {"grid": {"weights.strategy": ["balanced", "sqrt_inverse"]}}
DONE = re.compile(r"^\[\d/(\d)\] done (.+): (\d) trained, (\d) restored from the run cache$", re.MULTILINE)


@pytest.fixture(scope="module")
def origin(subprocesses, tmp_path_factory):
    return tiny_sweep_origin(tmp_path_factory.mktemp("cluster-origin"),
                             {"pair-sweep.yaml": PAIR_SWEEP})


FEW_SEEDS = "warning: {}: 1 seed can never give a significant verdict"  # the one-seed projects' first line


def failing_make(project, *args, warned="params.yaml"):
    """(stdout, stderr's lines but make's own), after the warning of too few seeds that every path
    gives first (warned: the file it names; None: no warning, the run stopped before it)."""
    result = make(project, *args, check=False, timeout=600)
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make: *** ")]
    if warned:
        assert lines[0].startswith(FEW_SEEDS.format(warned)), lines
        lines = lines[1:]
    return result.stdout, lines


def test_a_cluster_sweep_survives_a_killed_worker_and_draws_the_local_map_byte_for_byte(origin, cluster):
    local = clone(origin, "local")
    # the same plan on a local cluster of 2 workers: the shared unweighted arm first, then both
    # points side by side, each restoring it
    assert "(arm, seed) trainings: 3 ran, 2 restored from the run cache" in \
        make(local, "sweep", "SWEEP=pair-sweep.yaml", "JOBS=2").stdout

    driver = clone(origin, "driver")
    sweep = subprocess.Popen([*MAKE, "sweep", "SWEEP=pair-sweep.yaml", f"CLUSTER={cluster.address}"], cwd=driver,
                             env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    training(cluster.tmp / "worker-1", "--arm", sweep)  # a training in worker 1's scratch space
    cluster.kill("worker-1")
    out, err = sweep.communicate(timeout=900)
    assert sweep.returncode == 0, out + err
    assert "2 grid points, 0 already done; running 2 on the cluster" in out
    points = sorted(row["experiment"] for row in csv.DictReader(open(local / "sweep/sweep.csv", newline="")))
    done = DONE.findall(out)  # the arm trains once; each point restores it and trains its own arm
    assert done[0] == ("3", f"unweighted arm of {points[0]}", "1", "0"), out
    assert sorted(done[1:]) == [("3", name, "1", "1") for name in points], out
    assert "FAILED" not in err
    for name in ("sweep.csv", "sweep.md"):  # the same map but the seconds the trainings took
        assert without_seconds_columns(driver / "sweep" / name) == without_seconds_columns(local / "sweep" / name), name

    # Any clone: every point is found on the remotes, nothing is sent, the same map is drawn.
    cluster.start_worker("worker-1")
    third = clone(origin, "third")
    again = make(third, "sweep", "SWEEP=pair-sweep.yaml", f"CLUSTER={cluster.address}")
    assert "2 grid points, 2 already done; running 0 on the cluster" in again.stdout
    assert without_seconds_columns(third / "sweep/sweep.csv") == without_seconds_columns(local / "sweep/sweep.csv")


def test_repro_on_the_cluster_gives_the_local_run_s_dvc_lock_and_metrics(serial, cluster, tmp_path):
    cluster.wait_for_workers(2)
    local = serial[0]  # the session's `make repro JOBS=1` of the same one-seed project (conftest.py)
    # an origin of its own: the sweeps' trainings on this module's remotes would be restored
    driver = clone(tiny_sweep_origin(tmp_path), "repro-driver")
    result = make(driver, "repro", f"CLUSTER={cluster.address}")
    assert "training 2 (arm, seed) pairs on the cluster" in result.stdout
    assert sorted(DONE.findall(result.stdout)) == [("2", "train_unweighted@0", "1", "0"),
                                                   ("2", "train_weighted@0", "1", "0")]
    final = result.stdout.split("on the cluster", 1)[1]
    assert "Running stage 'train_" not in final  # every training restored from the run cache
    assert lock_text(driver) == lock_text(local)  # the same models: the same dvc.lock but the seconds
    assert metrics_files(driver) == metrics_files(local)
    assert "Data and pipelines are up to date" in dvc(driver, "status").stdout


def test_a_failing_grid_point_is_one_line_and_is_not_run_again(origin, cluster):
    driver = clone(origin, "failing")
    missing = {"fixed": {"data.source": "fashion-mnist"}, "grid": {"data.path": ["/nowhere/a", "/nowhere/b"]}}
    (driver / "failing.yaml").write_text(yaml.safe_dump(missing))
    out, err = failing_make(driver, "sweep", "SWEEP=failing.yaml", f"CLUSTER={cluster.address}", warned="failing.yaml")
    failed = [line for line in err if line.startswith("FAILED ")]
    assert len(failed) == 2 and all(": error: data.path" in line and "/nowhere/" in line for line in failed), err
    assert err[-1] == "error: 2 grid point(s) failed (above); run `make sweep CLUSTER=…` again to retry only those"
    assert len(err) == 3, err
    logs = "".join((cluster.tmp / f"{name}.log").read_text() for name in cluster.workers)
    assert "Compute Failed" not in logs  # the task ended with the run's error; Dask had nothing to retry


def test_no_scheduler_or_no_origin_is_one_line(origin, tmp_path):
    driver = clone(origin, "unreachable")
    _, err = failing_make(driver, "sweep", "SWEEP=pair-sweep.yaml", "CLUSTER=tcp://127.0.0.1:9",
                          warned="pair-sweep.yaml")
    assert len(err) == 1 and err[0].startswith("error: CLUSTER=tcp://127.0.0.1:9: no Dask scheduler answers there"), err
    run(driver, "git", "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    _, err = failing_make(driver, "repro", "CLUSTER=tcp://127.0.0.1:9")
    assert len(err) == 1 and err[0].startswith("error: `git fetch --quiet origin` failed: fatal: "), err
    assert err[0].endswith("a cluster run needs a git remote 'origin' that the workers can clone"), err


def test_a_point_whose_every_worker_dies_is_one_line(origin, tmp_path):
    (tmp_path / "dask").mkdir()
    lone = LocalCluster(tmp_path / "dask", workers=1, scheduler_config={"distributed.scheduler.allowed-failures": 0})
    try:
        driver = clone(origin, "doomed")
        (driver / "one-point.yaml").write_text(yaml.safe_dump({"grid": {"imbalance.ratio": [3]}}))
        sweep = subprocess.Popen([*MAKE, "sweep", "SWEEP=one-point.yaml", f"CLUSTER={lone.address}"], cwd=driver,
                                 env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        scratch = str(lone.tmp / "worker-1")
        while not any(scratch in (p.info["cwd"] or "") for p in psutil.process_iter(["cwd"])):  # the task runs
            assert sweep.poll() is None, sweep.communicate()
            time.sleep(0.5)
        lone.kill("worker-1")
        out, err = sweep.communicate(timeout=600)
    finally:
        lone.close()
    assert sweep.returncode != 0
    lines = [line for line in err.splitlines() if not line.startswith("make: *** ")]
    assert lines.pop(0).startswith(FEW_SEEDS.format("one-point.yaml")), err  # as on every path
    assert lines == ["FAILED sweep-3-581dd3: every worker that ran it died (distributed.scheduler.allowed-failures); "
                     "look for a worker killed by the out-of-memory killer or its machine going down",
                     "error: 1 grid point(s) failed (above); run `make sweep CLUSTER=…` again to retry only those"], err
