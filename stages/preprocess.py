"""preprocess: hold out a test split if the data has none, unbalance the training data, split off
validation, count each split's classes and name the minority classes."""
if not __package__:  # run by path, Python would not find the project's packages
    raise SystemExit("error: run stages as `python -m stages.preprocess` from the project root, or `dvc repro`")

from classweights.cli import run_stage
from classweights.files import read_arrays, write_arrays, write_json
from classweights.imbalance import class_counts, make_splits, minority_classes
from classweights.params import load_params
from classweights.paths import CLASS_COUNTS, RAW, SPLITS


def main():
    params = load_params()
    raw = read_arrays(RAW, ["x_train", "y_train", "x_test", "y_test", "class_names"])
    names = raw["class_names"].tolist()
    splits = make_splits(raw, params.imbalance, params.split)
    write_arrays(SPLITS, **splits, class_names=raw["class_names"])
    counts = {part: class_counts(splits[f"y_{part}"], names) for part in ("train", "val", "test")}
    minority, rule = minority_classes(params.imbalance, list(counts["train"].values()), names)
    write_json(CLASS_COUNTS, {**counts, "class_names": names, "minority_classes": minority, "minority_rule": rule})
    print(f"preprocess: {params.imbalance.profile} profile, training images per class "
          + ", ".join(f"{name}: {n}" for name, n in counts["train"].items()) + f"; minority classes {minority or 'none'}")


if __name__ == "__main__":
    run_stage(main)
