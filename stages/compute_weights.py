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
    splits = read_arrays(SPLITS, ["y_train", "class_names"])
    weights = class_weights(splits["y_train"], params.weights.strategy, params.weights.beta)
    write_json(WEIGHTS, {str(c): w for c, w in weights.items()})  # by index: Keras' class_weight
    names = splits["class_names"].tolist()
    print(f"compute_weights: {params.weights.strategy}: " + ", ".join(f"{names[c]}: {w:.3g}" for c, w in weights.items()))


if __name__ == "__main__":
    run_stage(main)
