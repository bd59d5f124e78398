"""frozen_features: with model.trainable head, the frozen backbone's features of the training,
validation and test splits, computed once for every (arm, seed) to train its head on."""
if not __package__:  # run by path, Python would not find the project's packages
    raise SystemExit("error: run stages as `python -m stages.frozen_features` from the project root, or `dvc repro`")

import sys
import time

from classweights.cli import run_stage
from classweights.files import read_arrays, write_stable_arrays
from classweights.params import check_backbone, load_params
from classweights.paths import FROZEN_FEATURES, SPLITS


def main():
    params = load_params()
    if params.model.trainable != "head":
        # DVC cannot skip a stage by a param, so this one always exists; fine-tuned, it writes an
        # archive without arrays, the same bytes every time, and starts no TensorFlow: the trainings
        # that depend on it see no change and the run costs this process's start-up.
        write_stable_arrays(FROZEN_FEATURES)
        print("frozen_features: model.trainable is all (the backbone is fine-tuned): nothing to compute")
        return
    splits = read_arrays(SPLITS, ["x_train", "x_val", "x_test"])
    check_backbone(params.model, splits["x_train"].shape[1:])  # before TensorFlow starts
    for unused in ("sklearn", "pandas", "matplotlib"):  # as in stages/train.py: Keras' start-up needs none
        sys.modules.setdefault(unused, None)
    from classweights.frozen import compute_features  # TensorFlow only once the inputs are known good

    started = time.perf_counter()
    features = compute_features(splits, params.model, params.train)
    write_stable_arrays(FROZEN_FEATURES, **features)
    inputs = sum(len(f) for f in features.values())
    print(f"frozen_features: {params.model.backbone}: {features['train'].shape[1]} features of {inputs} inputs in "
          f"{time.perf_counter() - started:.1f} s ({FROZEN_FEATURES})")


if __name__ == "__main__":
    run_stage(main)
