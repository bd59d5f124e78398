"""preprocess: unbalance the training data, split off validation, count each split's classes."""
if not __package__:  # run by path, Python would not find the project's packages
    raise SystemExit("error: run stages as `python -m stages.preprocess` from the project root, or `dvc repro`")

from classweights.cli import run_stage
from classweights.files import read_arrays, write_arrays, write_json
from classweights.imbalance import class_counts, make_splits, minority_classes
from classweights.params import load_params
from classweights.paths import CLASS_COUNTS, RAW, SPLITS


def main():
    params = load_params()
    raw = read_arrays(RAW, ["x_train", "y_train", "x_test", "y_test"])
    splits = make_splits(raw, params.imbalance, params.split)
    write_arrays(SPLITS, **splits)
    counts = {part: class_counts(splits[f"y_{part}"]) for part in ("train", "val", "test")}
    write_json(CLASS_COUNTS, {**counts, "minority_classes": minority_classes(params.imbalance)})
    print(f"preprocess: {params.imbalance.profile} profile, training counts per class "
          f"{list(counts['train'].values())}")


if __name__ == "__main__":
    run_stage(main)
