"""The two tiers (`slow`: the tests that start processes; `make check` runs the others) and the
fixtures: two tiny projects that have run, each built once a session (`finished`: 2 seeds, by
`dvc repro`; `serial`: 1 seed, by `make repro JOBS=1` as the README shares a run, with a git
origin and a DVC remote; the end-to-end modules work on copies and clones), a misbehaving HTTP
server on 127.0.0.1 and a folder of small made-up Fashion-MNIST files."""
import gc
import gzip
import http.server
import os
import shlex
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from classweights.cli import stage_exit_code
from tests.fakes import fake_images, idx_bytes, sha256
from tools.sandbox import MAKE, ONE_SEED, clone_finished, commit, dvc, env, link_venv, make_project, run


# pytester: tests/test_tiers.py runs a small suite of its own; tests.trained: tiny trainings several modules share
pytest_plugins = ["pytester", "tests.trained"]

# The end-to-end modules, slowest first (`make test` lists the slowest tests), then the modules
# whose in-process tests take longest (`make check`: their fast tests): pytest-xdist hands whole
# modules to its workers in this order (--no-loadscope-reorder), so that the long ones start at
# once and the short ones fill in.
SLOWEST_MODULES = ["test_scaleout.py", "test_cluster.py", "test_first_hour.py", "test_pipeline.py",
                   "test_own_data.py", "test_bench.py", "test_faults.py", "test_reproducibility.py",
                   "test_statistics.py", "test_backbones.py", "test_model.py", "test_regime.py", "test_remedies.py",
                   "test_sweep.py", "test_report.py", "test_decoupled.py", "test_datasets.py", "test_features.py"]


@pytest.hookimpl(optionalhook=True)  # known only when pytest-xdist is loaded (not under -p no:xdist)
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker more than the cores this process may use (unless
    PYTEST_XDIST_AUTO_NUM_WORKERS says otherwise). The end-to-end tests spend part of their time
    waiting on their subprocesses (DVC's queue, a Dask cluster, a killed training); on 2 cores,
    3 workers kept the cores over 90% busy (docs/speed.md)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own reading of it
    return len(os.sched_getaffinity(0)) + 1


# The tiers follow from what a test uses, never from a list of names: a test that starts a process
# (DVC, make, a Dask cluster, a stage or script run as a program) requests the `subprocesses`
# fixture, directly or through one that does (`finished`, `serial`, `project`, ...), and only those
# tests are marked slow. While any other test runs, starting a process fails and names the test, so
# a fast test cannot quietly become slow. Two programs that answer in milliseconds are allowed:
# git (tools.sandbox reads the committed params.yaml with it) and uname (the platform module runs
# it while TensorFlow loads).
SLOW_FIXTURE = "subprocesses"
FAST_PROGRAMS = {"git", "uname"}


def pytest_collection_finish(session):
    """Once every test module is imported: TensorFlow, Keras, SciPy and the rest hold ~400,000
    objects that live as long as the process, and every full garbage collection walks them all
    (0.3 s each; statsmodels' Holm adjustment calls gc.collect() itself, and the in-process
    trainings make TensorFlow trigger many). gc.freeze() leaves them out of every later collection."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return SLOWEST_MODULES.index(name) if name in SLOWEST_MODULES else len(SLOWEST_MODULES)

    items.sort(key=rank)  # stable: each module's tests keep their order
    for item in items:
        if SLOW_FIXTURE in item.fixturenames:  # the whole closure: fixtures of fixtures count
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def subprocesses():
    """Requested, directly or through another fixture, by every test that starts a process (but
    FAST_PROGRAMS): it marks the test slow and lets it start processes (see SLOW_FIXTURE)."""


def program(args):
    """The name of the program a Popen(args) would start (a command line's first word)."""
    if isinstance(args, (str, bytes, os.PathLike)):
        return Path(shlex.split(os.fsdecode(args))[0]).name
    return Path(os.fsdecode(list(args)[0])).name


@contextmanager
def no_processes(test):
    """While a fast test runs: starting any process but FAST_PROGRAMS fails, naming the test.
    (subprocess.Popen starts every process the project and its tests start; it calls
    _execute_child once its own state is set, so a refused start leaves a well-formed object.)"""
    real_execute_child = subprocess.Popen._execute_child

    def guarded(self, args, *rest):
        if program(args) not in FAST_PROGRAMS:
            raise AssertionError(f"{test} starts {program(args)!r} as a process: request the "
                                 f"`{SLOW_FIXTURE}` fixture (tests/conftest.py), which marks it slow")
        return real_execute_child(self, args, *rest)

    subprocess.Popen._execute_child = guarded
    try:
        yield
    finally:
        subprocess.Popen._execute_child = real_execute_child


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
    """Set-up, call and tear-down of each test; a fast one under no_processes."""
    if SLOW_FIXTURE in item.fixturenames:
        return (yield)
    with no_processes(item.nodeid):
        return (yield)


def built_once(tmp_path_factory, name, build):
    """A project that build(empty folder) makes and runs (returning the run's CompletedProcess),
    made once per test session, and that run: the first pytest-xdist worker to get here builds it
    in the folder all workers share, and each caller gets its own copy (cache and all)."""
    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:  # a pytest-xdist worker: the session's folder, above each worker's
        shared = shared.parent
    built = shared / f"{name}-built"
    with FileLock(shared / f"{name}.lock"):
        if not (shared / f"{name}.out").exists():
            shutil.rmtree(built, ignore_errors=True)  # a build that failed
            built.mkdir()
            first = build(built)
            (shared / f"{name}.err").write_text(first.stderr)
            (shared / f"{name}.out").write_text(first.stdout)  # last: the mark that it is built
    project = clone_finished(built, tmp_path_factory.mktemp(name) / "project")
    return project, subprocess.CompletedProcess([name], 0, (shared / f"{name}.out").read_text(),
                                                (shared / f"{name}.err").read_text())


@pytest.fixture(scope="session")
def finished(subprocesses, tmp_path_factory):
    """A tiny project (tools.sandbox.TINY: 2 seeds, 1 epoch) after its first `dvc repro`, with
    dvc.lock committed, and that run's output. Read it; to change anything, use `project`."""
    def build(folder):
        project = make_project(folder)
        first = dvc(project, "repro")
        commit(project, "first run")
        return first

    return built_once(tmp_path_factory, "finished", build)


README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def readme_block(name):
    """The shell lines between `<!-- name -->` and `<!-- /name -->` in the README, comments cut."""
    block = README.split(f"<!-- {name} -->", 1)[1].split(f"<!-- /{name} -->", 1)[0]
    lines = block.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    return [line.split("  #")[0].strip() for line in lines if line.strip()]


@pytest.fixture(scope="session")
def serial(subprocesses, tmp_path_factory):
    """The session's one-seed project (tools.sandbox.ONE_SEED), trained once for every end-to-end
    module that needs that run: its owner followed the README's sharing lines word for word, but
    for `make repro` serial (JOBS=1) and the remote's path, so the run is committed and pushed to
    a bare git origin (origin.git, branch main) and a DVC remote (dvc-remote), run records too.
    (project, that script's output, the folder holding origin.git): the local run the scale-out
    tests compare theirs with, and what a colleague clones. Read it; clone or copy to change it."""
    def build(folder):
        project = link_venv(make_project(folder / "owner", ONE_SEED))
        run(project, "git", "branch", "-m", "main")
        run(folder, "git", "init", "-q", "--bare", "--initial-branch=main", "origin.git")
        run(project, "git", "remote", "add", "origin", str(folder / "origin.git"))
        run(project, "git", "push", "-q", "-u", "origin", "HEAD")
        owner = readme_block("sharing")[:-1]  # the last line is the colleague's
        script = "set -e\n" + "\n".join(owner).replace("/mnt/team/classweights-dvc", str(folder / "dvc-remote"))
        script = script.replace("make ", " ".join([*MAKE, "JOBS=1"]) + " ")
        script = script.replace("git commit", "git -c user.name=t -c user.email=t@localhost commit")
        first = subprocess.run(["bash", "-c", script], cwd=project, env=env(), capture_output=True, text=True,
                               timeout=900)
        assert first.returncode == 0, first.stdout + first.stderr
        return first

    folder, first = built_once(tmp_path_factory, "serial", build)
    return folder / "owner", first, folder


@pytest.fixture
def project(finished, tmp_path):
    """A copy of the finished project (cache and all) that a test may change freely."""
    return clone_finished(finished[0], tmp_path / "project")


@pytest.fixture
def run_main(monkeypatch, capsys):
    """run_main(folder, main, *args): a stage's main() run in this process as its program runs it
    (classweights.cli), in folder with args as its command line. Returns what tools.sandbox.run
    returns for the real process: a CompletedProcess with the exit code, stdout and stderr."""
    def call(folder, main, *args):
        monkeypatch.chdir(folder)
        monkeypatch.setattr(sys, "argv", [main.__module__, *args])
        capsys.readouterr()  # what the test printed before is not the stage's
        code = stage_exit_code(main)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess([main.__module__, *args], code, out, err)

    return call


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.routes[path] = list of behaviours, one used per request (the last repeats)."""

    def do_GET(self):
        plan = self.server.routes.get(self.path, [("status", 404)])
        behaviour = plan.pop(0) if len(plan) > 1 else plan[0]
        self.server.hits.append(self.path)
        kind, value = behaviour
        if kind == "status":
            self.send_error(value)
        elif kind == "body":
            self.send_response(200)
            self.send_header("Content-Length", str(len(value)))
            self.end_headers()
            self.wfile.write(value)
        elif kind == "cut":  # promise the whole body, send half, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(value)))
            self.end_headers()
            self.wfile.write(value[: len(value) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif kind == "stall":  # say nothing for `value` seconds
            self.server.stop_event.wait(value)
        elif kind == "half_then_stall":  # send half the body, then hang until the test ends
            _stall_after_half(self, value)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """A real HTTP server on 127.0.0.1 whose answers each test scripts."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.routes, server.hits, server.stop_event = {}, [], threading.Event()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.stop_event.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def fashion_dir(tmp_path):
    """A folder with the four Fashion-MNIST file names holding small made-up data, and
    the checksum table that recognises them."""
    rng = np.random.default_rng(1)
    parts = {"train": np.repeat(np.arange(10), 30), "test": np.repeat(np.arange(10), 5)}
    arrays = {}
    for part, labels in parts.items():
        arrays[f"y_{part}"] = rng.permutation(labels).astype(np.uint8)
        arrays[f"x_{part}"] = fake_images(arrays[f"y_{part}"])
    from classweights.datasets import FASHION_FILES

    files = {}
    for name, (filename, _) in FASHION_FILES.items():
        raw = idx_bytes(arrays[name])
        (tmp_path / filename).write_bytes(gzip.compress(raw))
        files[name] = (filename, sha256(raw))
    return tmp_path, files, arrays


def _stall_after_half(handler, body):
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body[: len(body) // 2])
    handler.wfile.flush()
    handler.server.stop_event.wait(30)
