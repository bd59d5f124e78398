"""Throw-away copies of this project for the tests and the benchmark: real git, real `dvc repro`.

A copy holds the project's sources (never the pipeline's outputs) and the *committed*
params.yaml with the caller's overrides, so an experiment applied to the working tree
(`dvc exp run` writes its params there) cannot change what a test or benchmark runs.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv this runs in: dvc and python live here
TINY = {
    "imbalance": {"profile": "step", "ratio": 5, "n_max": 40},
    "train": {"seeds": [0, 1], "epochs": 1},
}


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


def dvc(cwd, *args, check=True):
    return run(cwd, str(BIN / "dvc"), *args, check=check)


def ran_stages(result):
    """The stages a `dvc repro` / `dvc exp run` really ran (not those restored from the run cache)."""
    return sorted(re.findall(r"Running stage '([^']+)'", result.stdout))


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
