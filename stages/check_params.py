"""check_params: validate params.yaml before any other stage runs.

Every stage runs after it (fetch depends on its output), so a bad value stops the pipeline
here with one line, before DVC removes any stage's outputs to re-run it. Its output is the
same bytes for every valid params.yaml, so passing the check re-runs nothing downstream."""
if not __package__:  # run by path, Python would not find the project's packages
    raise SystemExit("error: run stages as `python -m stages.check_params` from the project root, or `dvc repro`")

from pathlib import Path

from classweights.cli import run_stage
from classweights.errors import UserError
from classweights.files import write_json
from classweights.params import load_params
from classweights.paths import PARAMS_CHECKED


def main():
    params = load_params()
    if not Path(params.data.path).exists():  # before DVC's own "missing dependencies" at fetch
        raise UserError(f"data.path {params.data.path}: not found; put your data there (see data/input/README.md) "
                        "or correct data.path")
    write_json(PARAMS_CHECKED, {"params.yaml": "valid"})
    print("check_params: params.yaml is valid")


if __name__ == "__main__":
    run_stage(main)
