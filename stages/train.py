"""train_<arm>@<seed>: train the network (model.*) for one arm and one seed (see dvc.yaml)."""
if not __package__:  # run by path, Python would not find the project's packages
    raise SystemExit("error: run stages as `python -m stages.train` from the project root, or `dvc repro`")

import argparse
import sys

from classweights.cli import run_stage
from classweights.files import read_arrays, read_json, write_json
from classweights.params import check_backbone, load_params
from classweights.paths import ARMS, FROZEN_FEATURES, SPLITS, WEIGHTS, model_dir, seconds_file
from classweights.remedy import Remedy


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arm", choices=ARMS, required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    params = load_params()
    splits = read_arrays(SPLITS, ["x_train", "y_train", "x_val", "y_val", "x_test", "class_names"])
    check_backbone(params.model, splits["x_train"].shape[1:])  # before TensorFlow starts
    # the remedy arm: its loss, its weights, from its epoch on; the unweighted arm: cross-entropy, no weights
    remedy = Remedy.of(params) if args.arm == "weighted" else Remedy.unweighted()
    class_weight = read_json(WEIGHTS) if remedy.weighted else None

    # Keras imports scikit-learn, pandas and matplotlib at start-up only to offer its wrappers
    # and plots, which a training never uses; marked absent, they cost no time (~2 s of CPU a
    # training, docs/speed.md). setdefault: a process that has them already keeps them.
    for unused in ("sklearn", "pandas", "matplotlib"):
        sys.modules.setdefault(unused, None)
    from classweights.model import train_arm  # TensorFlow only once the inputs are known good

    network, saved = params.model, None
    if network.trainable == "head":  # the head alone, on the features frozen_features computed once
        from classweights.frozen import PARTS, head_training

        features = read_arrays(FROZEN_FEATURES, list(PARTS))
        splits, network, saved = head_training(splits, features, network, params.train.precision)
    seconds = train_arm(splits, params.train, args.seed, model_dir(args.arm, args.seed), class_weight, remedy,
                        label=f"train_{args.arm}@{args.seed}", network=network, saved=saved)
    # beside the model, not in its folder: the model's bytes are reproducible, wall-clock time is not
    write_json(seconds_file(args.arm, args.seed), {"fit_seconds": round(seconds, 2)})
    print(f"train_{args.arm}@{args.seed}: saved {model_dir(args.arm, args.seed)} ({seconds:.1f} s to fit)")


if __name__ == "__main__":
    run_stage(main)
