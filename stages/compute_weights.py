"""compute_weights: one loss weight per class from the training counts."""
if not __package__:  # run by path, Python would not find the project's packages
    raise SystemExit("error: run stages as `python -m stages.compute_weights` from the project root, or `dvc repro`")

from classweights.cli import run_stage
from classweights.files import read_arrays, write_json
from classweights.params import load_params
from classweights.paths import SPLITS, WEIGHTS
from classweights.weights import class_weights


def main():
    params = load_params()
    labels = read_arrays(SPLITS, ["y_train"])["y_train"]
    weights = class_weights(labels, params.weights.strategy, params.weights.beta)
    write_json(WEIGHTS, {str(c): w for c, w in weights.items()})
    print(f"compute_weights: {params.weights.strategy}: " + ", ".join(f"{c}: {w:.3g}" for c, w in weights.items()))


if __name__ == "__main__":
    run_stage(main)
