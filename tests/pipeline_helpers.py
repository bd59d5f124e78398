"""Run the real dvc.yaml in a throw-away git repository copied from this project."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv the tests run in: dvc and python live here
# Produced by the pipeline, so never copied: each test project starts from nothing.
OUTPUTS = ("dvc.lock", "metrics/", "reports/", "data/", "models/", "bench/results/")
TINY = {
    "imbalance": {"profile": "step", "ratio": 5, "n_max": 40},
    "train": {"seeds": [0, 1], "epochs": 1},
}


def env():
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}


def run(cwd, *args, check=True, timeout=600):
    result = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def dvc(cwd, *args, check=True):
    return run(cwd, str(BIN / "dvc"), *args, check=check)


def ran_stages(result):
    return sorted(re.findall(r"Running stage '([^']+)'", result.stdout))


def tracked_files():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [f for f in listed if not f.startswith(OUTPUTS) and (ROOT / f).is_file()]


def make_project(dest, params=TINY):
    """Copy the project's sources into dest, apply the params overrides, commit it to git."""
    for name in tracked_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    set_params(dest, params)
    run(dest, "git", "init", "-q")
    run(dest, "git", "add", "-A")
    run(dest, "git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "project")
    return dest


def set_params(project, overrides):
    """Merge {section: {key: value}} into project/params.yaml."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def clone_finished(source, dest):
    """A copy of a project that has run, cache and all, so a test can change it freely."""
    shutil.copytree(source, dest, symlinks=True)
    return dest
