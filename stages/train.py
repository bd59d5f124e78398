"""train_<arm>@<seed>: train the CNN for one arm and one seed (see dvc.yaml)."""
import argparse

from classweights.cli import run_stage
from classweights.files import read_arrays, read_json
from classweights.params import load_params
from classweights.stage_files import ARMS, SPLIT_ARRAYS, SPLITS, WEIGHTS, arm_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arm", choices=ARMS, required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    params = load_params()
    splits = read_arrays(SPLITS, SPLIT_ARRAYS)
    class_weight = None
    if args.arm == "weighted":
        # Imported here so that only the weighted arm runs (and, in dvc.yaml, depends on) weights.py.
        from classweights.weights import weights_from_json

        class_weight = weights_from_json(read_json(WEIGHTS))

    from classweights.model import train_arm  # TensorFlow only once the inputs are known good

    train_arm(splits, params.train, args.seed, arm_dir(args.arm, args.seed), class_weight)
    print(f"train_{args.arm}@{args.seed}: saved {arm_dir(args.arm, args.seed)}")


if __name__ == "__main__":
    run_stage(main)
