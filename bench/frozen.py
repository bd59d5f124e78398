"""`make bench`, part 3: model.trainable head with the frozen backbone's features computed once
(the frozen_features stage) against the backbone run in every epoch of every training, as before.

A frozen keras.applications backbone (MobileNetV3Small at its smallest input, 32 x 32, random
weights: no download) on the shipped data's splits, its head trained for a few epochs on one
thread; a training's time includes building its network and, with cached features, putting the
backbone back before the head (the model it saves). Each round trains one seed both ways, in
turns (which goes first alternates), so a drift in the host's speed hits both alike; medians and
spreads over the rounds, and the ratio. The features' own cost, paid once per data and backbone,
is measured apart and added to a whole run of the shipped seeds. Both ways give the same head
(tests/test_frozen.py). Writes bench/results/frozen.json.

    python -m bench.frozen                 # 3 epochs, 6 rounds
    python -m bench.frozen --tiny          # a quick check that it runs
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classweights.machine import describe  # noqa: E402
from tools.sandbox import shipped_params  # noqa: E402

BACKBONE = "keras:MobileNetV3Small"
IMAGE_SIZE = [32, 32]  # MobileNetV3Small's smallest input


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=6, help="seeds, each trained both ways")
    parser.add_argument("--tiny", action="store_true", help="a quick check: 40 images a majority class, 2 rounds")
    parser.add_argument("--out", default=str(ROOT / "bench/results/frozen.json"))
    return parser.parse_args()


def spread(values):
    """Median, and the smallest and largest value."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main():
    args = parse_args()
    if args.tiny:
        args.rounds = 2
    overrides = {"data": {"image_size": IMAGE_SIZE}, "model": {"backbone": BACKBONE, "trainable": "head"},
                 "train": {"epochs": args.epochs}, **({"imbalance": {"n_max": 40}} if args.tiny else {})}
    params = shipped_params(overrides)

    from classweights.datasets import load_source
    from classweights.frozen import compute_features, head_network, head_splits, with_backbone
    from classweights.imbalance import make_splits
    from classweights.model import train_model

    raw, _ = load_source(params.data)
    splits = make_splits(raw, params.imbalance, params.split)
    started = time.perf_counter()
    features = compute_features(splits, params.model, params.train)
    features_s = time.perf_counter() - started
    shape = splits["x_train"].shape[1:]
    ways = {"backbone in every epoch": (splits, params.model, lambda model: model),
            "cached features": (head_splits(splits, features), head_network(params.model),
                                lambda head: with_backbone(head, params.model, shape, params.train.precision))}
    seconds = {way: [] for way in ways}
    for seed in range(args.rounds):
        for way in list(ways)[::1 if seed % 2 == 0 else -1]:  # the first one alternates
            inputs, network, saved = ways[way]
            started = time.perf_counter()
            saved(train_model(inputs, params.train, seed, network=network)[0])  # the model a training saves
            seconds[way].append(time.perf_counter() - started)
        print(f"  seed {seed}: " + ", ".join(f"{way} {s[-1]:.2f} s" for way, s in seconds.items())
              + f" (load {os.getloadavg()[0]:.1f})", flush=True)
    inline, cached = (statistics.median(seconds[way]) for way in ways)
    runs = len(params.train.seeds) * 2  # both arms of every shipped seed
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": describe(params.train.threads), "cores": os.cpu_count(),
        "load_average": os.getloadavg(), "backbone": BACKBONE, "image_size": IMAGE_SIZE,
        "training_images": len(splits["y_train"]), "epochs": args.epochs, "rounds": args.rounds,
        "features_once_s": features_s,
        "training_s": {way: {**spread(s), "all": s} for way, s in seconds.items()},
        "speedup_per_training": inline / cached,
        "trainings_in_a_run": runs,
        "speedup_per_run": runs * inline / (features_s + runs * cached),
    }
    print(f"features once: {features_s:.2f} s; a training ({args.epochs} epochs), median over {args.rounds} rounds: "
          f"backbone in every epoch {inline:.2f} s, cached features {cached:.2f} s -> "
          f"{result['speedup_per_training']:.1f}x; a run of {runs} trainings: {result['speedup_per_run']:.1f}x")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
