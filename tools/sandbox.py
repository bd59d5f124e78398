"""Throw-away copies of this project for the tests and the benchmark: real git, real `dvc repro`.

A copy holds the project's sources (never the pipeline's outputs) and the *committed*
params.yaml with the caller's overrides, so an experiment applied to the working tree
(`dvc exp run` writes its params there) cannot change what a test or benchmark runs.
"""
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv this runs in: dvc and python live here
TINY = {
    "imbalance": {"profile": "step", "ratio": 5, "n_max": 40},
    "train": {"seeds": [0, 1], "epochs": 1},
}
ONE_SEED = {**TINY, "train": {**TINY["train"], "seeds": [0]}}
MAKE = ["make", "-s", "-o", ".venv/.installed-requirements"]  # a copy's `make`: its .venv is this venv (link_venv)


# Set when the tests run under `make test`: a `make` the tests start must behave as a user's does.
MAKE_VARIABLES = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")


def env():
    outer = {key: value for key, value in os.environ.items() if key not in MAKE_VARIABLES}
    return {**outer, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}


def run(cwd, *args, check=True, timeout=600):
    result = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def dvc(cwd, *args, check=True, timeout=600):
    return run(cwd, str(BIN / "dvc"), *args, check=check, timeout=timeout)


def make(project, *args, check=True, timeout=900):
    """`make args` in a copy that runs in this venv (link_venv), as its user would."""
    return run(project, *MAKE, *args, check=check, timeout=timeout)


def ran_stages(result):
    """The stages a `dvc repro` / `dvc exp run` really ran (not those restored from the run cache)."""
    return sorted(re.findall(r"Running stage '([^']+)'", result.stdout))


def wall_clock(path):
    """Whether a path holds wall-clock seconds (classweights.paths.SECONDS, TRAINING_SECONDS): the
    one output two runs of the same params, code and machine do not give byte for byte."""
    return "seconds" in str(path)


def metrics_files(project):
    """{path: bytes} of every JSON file under project/metrics but the wall-clock seconds: two runs'
    metrics, compared whole."""
    return {str(p.relative_to(project)): p.read_bytes() for p in sorted((project / "metrics").rglob("*.json"))
            if not wall_clock(p.relative_to(project))}


def without_seconds_columns(path):
    """A sweep's sweep.csv (as rows) or sweep.md (as text) without the columns whose heading names
    seconds: what two sweeps that trained the same points give byte for byte."""
    text = Path(path).read_text()
    if Path(path).suffix == ".csv":
        rows = list(csv.reader(io.StringIO(text)))
        keep = [i for i, name in enumerate(rows[0]) if not wall_clock(name)]
        return [[row[i] for i in keep] for row in rows]
    lines, keep = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            keep = None  # no table, or its end
        else:
            cells = line.split("|")
            if keep is None:  # a table's heading row
                keep = [i for i, cell in enumerate(cells) if not wall_clock(cell)]
            line = "|".join(cells[i] for i in keep)
        lines.append(line)
    return "\n".join(lines)


def lock_text(project):
    """dvc.lock with the hashes of the wall-clock seconds (their files, and evaluate's dependency on
    them) left out: what two runs that trained the same models give byte for byte."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    for stage in lock.get("stages", {}).values():
        for kind in ("deps", "outs"):
            stage[kind] = [{"path": entry["path"]} if wall_clock(entry["path"]) else entry
                           for entry in stage.get(kind, [])]
    return yaml.safe_dump(lock, sort_keys=False)


def committed_params():
    """params.yaml as committed at HEAD, as a dict: the shipped defaults."""
    text = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    return yaml.safe_load(text)


def merged(params, overrides):
    """params with {section: {key: value}} overrides applied (a new dict)."""
    result = {section: dict(values) for section, values in params.items()}
    for section, values in overrides.items():
        result.setdefault(section, {}).update(values)
    return result


def shipped_params(overrides=None):
    """The committed defaults with overrides, validated: for tests that call the library directly."""
    from classweights.params import parse_params

    return parse_params(merged(committed_params(), overrides or {}))


def _pipeline_outputs():
    """Paths dvc.yaml writes (a templated path counts from its folder), and dvc.lock."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outputs = ["dvc.lock"]
    for stage in stages.values():
        body = stage.get("do", stage)
        for entry in body.get("outs", []) + body.get("metrics", []) + body.get("plots", []):
            path = entry if isinstance(entry, str) else next(iter(entry))
            outputs.append(path.split("$")[0])
    return tuple(outputs)


def source_files():
    """The project's files as git sees them (tracked or new, not ignored), minus pipeline outputs."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    outputs = _pipeline_outputs()
    return [f for f in listed if not f.startswith(outputs) and (ROOT / f).is_file()]


def commit(project, message):
    run(project, "git", "add", "-A")
    run(project, "git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", message)


def make_project(dest, overrides=TINY):
    """Copy the sources into dest with the committed params.yaml plus overrides; commit it to git."""
    for name in source_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    (dest / "params.yaml").write_text(yaml.safe_dump(merged(committed_params(), overrides), sort_keys=False))
    run(dest, "git", "init", "-q")
    commit(dest, "project")
    return dest


def set_params(project, overrides):
    """Merge {section: {key: value}} into project/params.yaml."""
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(merged(yaml.safe_load(path.read_text()), overrides), sort_keys=False))


def clone_finished(source, dest):
    """A copy of a project that has run, cache and all, so a test can change it freely."""
    shutil.copytree(source, dest, symlinks=True)
    return dest


def link_venv(project):
    """Give a copy the venv this runs in as .venv, so `make` targets run there without
    installing; git never sees the link (it is not a directory, so .gitignore's .venv/ misses it)."""
    (project / ".venv").symlink_to(sys.prefix)
    with open(project / ".git/info/exclude", "a") as exclude:
        exclude.write("/.venv\n")
    return project


def shared_origin(tmp, project):
    """A bare git origin and a local-directory DVC remote (the default), as a team would set up."""
    run(tmp, "git", "init", "-q", "--bare", "origin.git")
    dvc(project, "remote", "add", "-d", "shared", str(tmp / "dvc-remote"))
    commit(project, "shared DVC remote")
    run(project, "git", "remote", "add", "origin", str(tmp / "origin.git"))
    run(project, "git", "push", "-q", "origin", "HEAD:main")


def clone(tmp, name, into=None):
    """A clone of tmp/origin.git (see shared_origin), as into/name (into: tmp unless given), that
    runs `make` in this venv."""
    into = into or tmp
    run(into, "git", "clone", "-q", "-b", "main", str(tmp / "origin.git"), name)
    return link_venv(into / name)


class LocalCluster:
    """A real Dask cluster on 127.0.0.1: `dask scheduler` and `dask worker` processes of this
    venv, each worker one thread with its own scratch directory under tmp. Each process is
    in its own process group, so that killing a worker takes its trainings with it, as a
    machine going down would."""

    def __init__(self, tmp, workers=2, scheduler_config=None):
        """scheduler_config: Dask settings for the scheduler, e.g. {"distributed.scheduler.allowed-failures": 0}."""
        self.tmp, self.workers = Path(tmp), {}
        file = self.tmp / "scheduler.json"
        config = {f"DASK_{key.upper().replace('.', '__').replace('-', '_')}": str(value)
                  for key, value in (scheduler_config or {}).items()}
        self.scheduler = self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0",
                                     "--no-dashboard", "--scheduler-file", str(file), config=config)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the scheduler may have created the file, not yet written it
            try:
                self.address = json.loads(file.read_text())["address"]
                break
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.2)
        else:
            os.killpg(self.scheduler.pid, signal.SIGKILL)  # no one would close it
            raise AssertionError(f"no Dask scheduler address in {file} after 60 s; see {self.tmp / 'scheduler.log'}")
        for k in range(1, workers + 1):
            self.start_worker(f"worker-{k}")
        self.wait_for_workers(workers)

    def _start(self, log, *args, config=None):
        with open(self.tmp / f"{log}.log", "a") as out:
            return subprocess.Popen([str(BIN / "dask"), *args], cwd=self.tmp, env={**env(), **(config or {})}, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def start_worker(self, name):
        """Start a worker whose scratch directory is tmp/name; return that directory."""
        scratch = self.tmp / name
        scratch.mkdir(exist_ok=True)
        self.workers[name] = self._start(name, "worker", self.address, "--nthreads", "1", "--local-directory",
                                         str(scratch), "--memory-limit", "0", "--no-dashboard")
        return scratch

    def wait_for_workers(self, count):
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(count, timeout=120)

    def kill(self, name):
        """SIGKILL a worker and everything it started."""
        os.killpg(self.workers.pop(name).pid, signal.SIGKILL)

    def close(self):
        for process in [*self.workers.values(), self.scheduler]:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def folder_names():
    """Fashion-MNIST's class names as folder names: '/' cannot be in one, and the label's number
    in front keeps the sorted folders in Fashion-MNIST's label order."""
    from classweights.datasets import FASHION_NAMES

    return [f"{label} {name.replace('/', '-')}" for label, name in enumerate(FASHION_NAMES)]


def export_folder(arrays, names, folder):
    """Write arrays as PNGs, train/ and test/ halves, a sub-folder per class named by the class
    name, files numbered by their position (so the folder source reads them back in order)."""
    from PIL import Image

    for part in ("train", "test"):
        for i, (image, label) in enumerate(zip(arrays[f"x_{part}"], arrays[f"y_{part}"])):
            where = folder / part / names[label]
            where.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(where / f"{i:05d}.png")
