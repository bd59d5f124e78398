"""ResNet-20 (`model.backbone: resnet`) per epoch on full-size Fashion-MNIST against this CPU's
arithmetic limit: the epoch's floating-point operations divided by what one core sustains on a
large float32 matrix product, both measured here in one run, on one thread (train.threads: 1).

The operations are counted from the network's own layers (each convolution and dense layer:
2 x multiply-adds per image; a training step about 3x the forward pass: the forward pass and the
two products of the backward pass); the time is the median step of a few dozen SGD steps of 128
images (60,000 images make 469 steps an epoch; the step's time does not depend on the pixels'
values, so random images stand in). Writes bench/results/resnet.json.

    python -m bench.resnet                 # ResNet-20
    python -m bench.resnet --depth 32      # ResNet-32, Cao et al.'s
"""
import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classweights.machine import describe  # noqa: E402
from tools.sandbox import shipped_params  # noqa: E402

IMAGES, SHAPE, CLASSES, BATCH = 60_000, (28, 28), 10, 128


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=20, help="model.resnet_depth: 6n + 2")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps (after a warm-up)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/resnet.json"))
    return parser.parse_args()


def forward_flops(model):
    """Floating-point operations of one image's forward pass through the convolutions and dense
    layers (2 per multiply-add), sub-models included; batch normalisation, ReLU and pooling, a few
    percent more, are left out, so the limit below is a little generous."""
    from keras import layers

    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers"):
            total += forward_flops(layer)
        elif isinstance(layer, layers.Conv2D):
            kernel_h, kernel_w, channels_in, channels_out = layer.kernel.shape
            out_h, out_w = layer.output.shape[1:3]
            total += 2 * out_h * out_w * kernel_h * kernel_w * channels_in * channels_out
        elif isinstance(layer, layers.Dense):
            total += 2 * math.prod(layer.kernel.shape)
    return total


def core_peak_gflops(size=1024, repeats=20):
    """One thread's float32 matrix-product rate, GFLOP/s: the best of five rounds."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    rates = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeats):
            c = tf.linalg.matmul(a, a)
        c.numpy()
        rates.append(2 * size**3 * repeats / (time.perf_counter() - started) / 1e9)
    return max(rates)


def step_seconds(model, steps):
    """Median seconds of one SGD step of BATCH random images (the first, which builds the graph, not counted)."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, *SHAPE), dtype=np.uint8)
    y = rng.integers(0, CLASSES, BATCH)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), max(times)


def main():
    args = parse_args()
    from classweights.model import build_model, use_threads

    use_threads(1)
    params = shipped_params({"model": {"backbone": "resnet", "resnet_depth": args.depth}, "train": {"dropout": 0.0}})
    model = build_model(dropout=0.0, input_shape=SHAPE, num_classes=CLASSES, network=params.model)
    epoch_flops = 3 * forward_flops(model) * IMAGES
    peak = core_peak_gflops()
    median, fastest, slowest = step_seconds(model, args.steps)
    epoch = median * math.ceil(IMAGES / BATCH)
    limit = epoch_flops / (peak * 1e9)
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": describe(1), "depth": args.depth,
               "images": IMAGES, "batch": BATCH, "steps_timed": args.steps,
               "forward_mflops_per_image": round(forward_flops(model) / 1e6, 2),
               "epoch_tflops": round(epoch_flops / 1e12, 3), "core_peak_gflops": round(peak, 1),
               "step_s": {"median": round(median, 4), "min": round(fastest, 4), "max": round(slowest, 4)},
               "epoch_s": round(epoch, 1), "arithmetic_limit_epoch_s": round(limit, 1),
               "fraction_of_peak": round(limit / epoch, 3)}
    print(f"ResNet-{args.depth}: {results['forward_mflops_per_image']} MFLOP an image forward, "
          f"{results['epoch_tflops']} TFLOP a training epoch of {IMAGES:,} images; one core's float32 peak "
          f"{peak:.1f} GFLOP/s, so at best {limit:.0f} s an epoch; measured {epoch:.0f} s an epoch "
          f"({median * 1000:.0f} ms a step of {BATCH}, {fastest * 1000:.0f}-{slowest * 1000:.0f} ms): "
          f"{limit / epoch:.0%} of the limit", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
