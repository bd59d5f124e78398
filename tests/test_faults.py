"""Bad input and interruption: one clear line on stderr, a non-zero exit, no traceback, and
nothing half-written left behind. The bad-input cases run a stage's main() in this process, as
its program does (classweights.cli); one case a stage, and every interruption, through the
real process in a project the pipeline made."""
import os
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from classweights.cli import stage_exit_code
from stages import compute_weights, evaluate, fetch, preprocess
from tools.sandbox import BIN, TINY, committed_params, dvc, env, merged, ran_stages, run, set_params

STAGES = {"fetch": fetch.main, "preprocess": preprocess.main, "compute_weights": compute_weights.main,
          "evaluate": evaluate.main}


def stage(project, name, *args, check=False):
    return run(project, sys.executable, "-m", f"stages.{name}", *args, check=check)


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """A folder with the tiny project's params.yaml (tools.sandbox.TINY) and what its fetch stage
    writes, fetched in this process."""
    folder = tmp_path_factory.mktemp("fetched")
    (folder / "params.yaml").write_text(yaml.safe_dump(merged(committed_params(), TINY), sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        assert stage_exit_code(fetch.main) == 0
    return folder


@pytest.fixture
def folder(fetched, tmp_path):
    """A copy of `fetched` that a test may change freely."""
    return shutil.copytree(fetched, tmp_path / "folder")


def assert_one_line_error(result, *words):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def no_partials(project):
    return [str(p) for p in project.rglob("*.partial")]


PARAM_CASES = [
    ("fetch", {"data": {"sorce": "mnist"}}, ["unknown key 'data.sorce'", "source, path, label_column, test_path, mirror"]),
    ("fetch", {"data": {"source": "cifar"}}, ["data.source = 'cifar'", "'mnist-sample'"]),
    ("preprocess", {"imbalance": {"ratio": "10"}}, ["imbalance.ratio = '10'", "valid number"]),
    ("preprocess", {"imbalance": {"minority_classes": [1, 1]}}, ["class id 1 is listed twice"]),
    ("preprocess", {"imbalance": {"minority_classes": [0, 10]}},
     ["imbalance.minority_classes = [0, 10]: the data has classes 0..9"]),
    ("preprocess", {"imbalance": {"ratio": 1000, "n_max": None}},
     ["imbalance.ratio = 1000.0", "leaves class 0 with 0 training image", "at most 200"]),
    ("compute_weights", {"weights": {"strategy": "inverse"}}, ["weights.strategy = 'inverse'", "'balanced'"]),
    ("compute_weights", {"weights": {"beta": 1}}, ["weights.beta = 1", "less than 1"]),
    ("evaluate", {"train": {"seeds": []}}, ["train.seeds = []", "at least one seed"]),
    ("evaluate", {"evaluate": {"alpha": 2}}, ["evaluate.alpha = 2", "less than 1"]),
    ("evaluate", {"loss": {"focal_gamma": -1}}, ["loss.focal_gamma = -1", "greater than or equal to 0"]),
    ("evaluate", {"weights": {"apply": "none"}}, ["weights.apply none", "the unweighted arm itself"]),
]


def data_times(folder):
    return {p: p.stat().st_mtime_ns for p in sorted((folder / "data").iterdir())}


@pytest.mark.parametrize("name, overrides, words", PARAM_CASES, ids=[str(c[1])[:50] for c in PARAM_CASES])
def test_bad_params_stop_the_stage_with_one_line(folder, run_main, name, overrides, words):
    set_params(folder, overrides)
    before = data_times(folder)
    assert_one_line_error(run_main(folder, STAGES[name]), *words)
    assert data_times(folder) == before  # nothing rewritten
    assert no_partials(folder) == []


FIRST_CASE_OF_EACH_STAGE = [next(case for case in PARAM_CASES if case[0] == name) for name in STAGES]


@pytest.mark.parametrize("name, overrides, words", FIRST_CASE_OF_EACH_STAGE, ids=list(STAGES))
def test_each_stage_s_process_stops_with_the_same_one_line(project, name, overrides, words):
    set_params(project, overrides)
    before = data_times(project)
    assert_one_line_error(stage(project, name), *words)
    assert data_times(project) == before
    assert no_partials(project) == []


def test_train_stage_checks_params_before_loading_tensorflow(project):
    set_params(project, {"train": {"optimizer": "adamw"}})
    result = stage(project, "train", "--arm", "weighted", "--seed", "0")
    assert_one_line_error(result, "train.optimizer = 'adamw'", "'rmsprop', 'adam' or 'sgd'")


def test_dvc_repro_and_exp_run_report_the_same_line(project):
    set_params(project, {"train": {"epochs": 0}})
    result = dvc(project, "repro", check=False)
    assert result.returncode != 0
    assert "error: params.yaml: train.epochs = 0: Input should be greater than or equal to 1" in result.stderr
    assert "Traceback" not in result.stderr
    run(project, "git", "checkout", "params.yaml")
    result = dvc(project, "exp", "run", "-S", "weights.beta=1.5", "-S", "weights.strategy=effective_number",
                 check=False)
    assert result.returncode != 0
    assert "error: params.yaml: weights.beta = 1.5: Input should be less than 1" in result.stderr
    assert "Traceback" not in result.stderr


DATA_CASES = [
    ({"source": "mnist", "path": "nowhere/mnist.npz"}, ["data.path nowhere/mnist.npz: not found", "mnist.npz"]),
    ({"source": "mnist", "path": "data"}, ["data.path data: is a directory", "mnist.npz file"]),
    ({"source": "mnist", "path": "params.yaml"}, ["params.yaml: checksum mismatch", "expected Keras' mnist.npz"]),
    ({"source": "fashion-mnist", "path": "params.yaml"}, ["data.path params.yaml: is a file", "directory"]),
    ({"source": "fashion-mnist", "path": "empty"}, ["train-images-idx3-ubyte.gz: not found"]),
    ({"source": "fashion-mnist", "path": "truncated"}, ["train-images-idx3-ubyte.gz: not a valid or complete .gz"]),
    ({"source": "fashion-mnist", "path": "corrupt"}, ["train-images-idx3-ubyte.gz: checksum mismatch"]),
]


@pytest.mark.parametrize("data, words", DATA_CASES, ids=[c[0]["path"] for c in DATA_CASES])
def test_bad_data_files_are_named_with_what_was_expected(folder, run_main, data, words):
    import gzip

    (folder / "empty").mkdir()
    random_bytes = bytes(range(256)) * 40
    for name, content in (("truncated", gzip.compress(random_bytes)[:200]), ("corrupt", gzip.compress(b"\0" * 99))):
        (folder / name).mkdir()
        (folder / name / "train-images-idx3-ubyte.gz").write_bytes(content)
    raw_before = (folder / "data/raw.npz").read_bytes()
    set_params(folder, {"data": data})
    assert_one_line_error(run_main(folder, fetch.main), *words)
    assert (folder / "data/raw.npz").read_bytes() == raw_before  # the old output is untouched
    assert no_partials(folder) == []


def test_a_corrupt_intermediate_file_is_named(folder, run_main):
    (folder / "data/raw.npz").write_bytes(b"PK\x03\x04" + b"\0" * 50)
    assert_one_line_error(run_main(folder, preprocess.main), "data/raw.npz: not a readable .npz file")


def test_download_errors_from_a_misbehaving_server(folder, run_main, http_server):
    set_params(folder, {"data": {"source": "mnist", "mirror": http_server.url}})
    http_server.routes["/mnist.npz"] = [("status", 404)]
    assert_one_line_error(run_main(folder, fetch.main), "mnist.npz: server answered HTTP 404", "mnist-sample",
                          "data.path")
    http_server.routes["/mnist.npz"] = [("body", b"not mnist at all")]
    assert_one_line_error(run_main(folder, fetch.main), "checksum mismatch")
    assert not (folder / "data/downloads/mnist.npz").exists()
    assert no_partials(folder) == []


def test_no_network_says_how_to_run_offline(folder, run_main, monkeypatch):
    from types import SimpleNamespace

    from classweights import datasets

    waits = []  # the waits between tries: asked for, not slept (7 s)
    monkeypatch.setattr(datasets, "time", SimpleNamespace(sleep=waits.append))
    set_params(folder, {"data": {"source": "fashion-mnist", "mirror": "http://127.0.0.1:9/"}})
    result = run_main(folder, fetch.main)
    assert_one_line_error(result, "could not download http://127.0.0.1:9/train-images-idx3-ubyte.gz after 4 tries",
                          "network could not be reached", "data.source: mnist-sample", "data.path")
    assert waits == [1, 2, 4]  # the shipped back-off: doubling from 1 s


def _ctrl_c_as_in_a_terminal():
    # A shell starts a background job with Ctrl-C ignored, and children inherit that; the
    # processes under test must react to SIGINT however the test suite itself was started.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(project, program, *args, new_session=False):
    """Start a process; a bare `-m ...` runs the venv's Python."""
    command = [sys.executable, program, *args] if program == "-m" else [program, *args]
    return subprocess.Popen(command, cwd=project, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=new_session, preexec_fn=_ctrl_c_as_in_a_terminal)


def wait_for(path, process, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def wait_for_epoch(process, seconds=120):
    """Read the process's output up to a training's first per-epoch line (`... epoch 1/N ...`)."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "no epoch line appeared"
        if select.select([process.stdout], [], [], remaining)[0]:
            line = process.stdout.readline()
            assert line, process.communicate()  # output closed: the process ended
            if "  epoch 1/" in line:
                return


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_training_killed_mid_epoch_leaves_nothing_and_repro_recovers(project, sig):
    set_params(project, {"train": {"epochs": 10_000}})  # far longer than the test waits
    # Ctrl-C in a terminal signals the whole process group: dvc and the stage it runs.
    process = start(project, str(BIN / "dvc"), "repro", "train_weighted@1", new_session=True)
    partial = project / "models/weighted/.seed_1.partial"
    wait_for_epoch(process)  # an epoch is done, the next one runs
    assert partial.is_dir()
    os.killpg(process.pid, sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "error: interrupted; no finished output was written" in stderr
    assert not partial.exists() and not (project / "models/weighted/seed_1").exists()
    assert no_partials(project) == []
    set_params(project, {"train": {"epochs": 2}})  # a setting never run: the stage must really train
    assert ran_stages(dvc(project, "repro", "train_weighted@1")) == ["check_params", "train_weighted@1"]
    assert (project / "models/weighted/seed_1/model.keras").is_file()
    assert "up to date" in dvc(project, "status", "train_weighted@1").stdout


def test_a_stage_killed_outside_dvc_keeps_the_previous_output_whole(project):
    before = (project / "models/unweighted/seed_0/model.keras").read_bytes()
    set_params(project, {"train": {"epochs": 10_000}})
    process = start(project, "-m", "stages.train", "--arm", "unweighted", "--seed", "0")
    wait_for_epoch(process)
    assert (project / "models/unweighted/.seed_0.partial").is_dir()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted; no finished output was written"
    assert (project / "models/unweighted/seed_0/model.keras").read_bytes() == before
    assert no_partials(project) == []


def test_a_training_that_ended_leaves_none_of_tensorflow_s_temporary_files(project, tmp_path):
    # its fast exit skips the interpreter's teardown, not the atexit handlers that delete them
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    result = subprocess.run([sys.executable, "-m", "stages.train", "--arm", "weighted", "--seed", "0"], cwd=project,
                            env={**env(), "TMPDIR": str(temporary)}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in temporary.iterdir()) == []


def test_fetch_killed_mid_download_leaves_no_file_a_later_run_could_trust(project, http_server):
    http_server.routes["/mnist.npz"] = [("half_then_stall", b"m" * 2_000_000)]
    set_params(project, {"data": {"source": "mnist", "mirror": http_server.url}})
    process = start(project, "-m", "stages.fetch")
    wait_for(project / "data/downloads/.mnist.npz.partial", process)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 130
    assert list((project / "data/downloads").iterdir()) == []


def test_evaluate_killed_mid_write_leaves_the_previous_report_whole(project):
    before = {p.name: p.read_bytes() for p in (project / "reports").iterdir()}
    process = start(project, "-m", "stages.evaluate")
    wait_for(project / ".reports.partial", process)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert process.returncode == 130
    assert {p.name: p.read_bytes() for p in (project / "reports").iterdir()} == before
    assert no_partials(project) == []
    dvc(project, "repro")
