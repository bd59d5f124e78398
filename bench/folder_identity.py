"""Full-size evidence that the folder source is the same pipeline (docs/own-data.md):
Fashion-MNIST through the `fashion-mnist` source, and exported to a folder of PNGs (one
sub-folder a class, train/ and test/ halves) through the `folder` source, each a fresh project
and a real `dvc repro`. Compared: every array of the splits, every model directory (the saved
model, its test probabilities and training curves: the hashes dvc.lock records) and the arms'
headline metrics, byte for byte. Class names differ by design (a folder name cannot hold '/'),
so the files that hold or are keyed by them (splits.npz's names, class_counts.json) are compared
without them.

    python -m bench.folder_identity [--data-dir DIR] [--seeds N] [--epochs N]

Writes bench/results/folder_identity.json.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchmark import print_goals_and_save  # noqa: E402
from bench.throughput import FASHION_DIR  # noqa: E402
from tools.sandbox import commit, dvc, export_folder, folder_names, make_project, shipped_params  # noqa: E402

COMPARED_STAGES = ("train_unweighted", "train_weighted")
COMPARED_METRICS = ("metrics/unweighted.json", "metrics/weighted.json", "metrics/logit_adjusted.json")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=FASHION_DIR)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench/results/folder_identity.json"))
    return parser.parse_args()


def same_splits(a, b):
    """Every array of data/splits.npz equal but the class names; the class counts equal by class."""
    import numpy as np

    with np.load(a / "data/splits.npz") as x, np.load(b / "data/splits.npz") as y:
        arrays = x.files == y.files and all(np.array_equal(x[k], y[k]) and x[k].dtype == y[k].dtype
                                            for k in x.files if k != "class_names")
    counts = [json.loads((p / "data/class_counts.json").read_text()) for p in (a, b)]
    # its keys are the class names, written sorted: take them in label order
    by_class = [{part: [c[part][name] for name in c["class_names"]] for part in ("train", "val", "test")}
                for c in counts]
    return arrays and by_class[0] == by_class[1]


def output_hashes(project):
    """{stage: {output path: md5}} of the training stages, from dvc.lock."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {stage: {out["path"]: out.get("md5") for out in entry.get("outs", [])}
            for stage, entry in lock.items() if stage.startswith(COMPARED_STAGES)}


def timed_repro(project):
    started = time.perf_counter()
    dvc(project, "repro", timeout=4 * 3600)
    return time.perf_counter() - started


def summary(results):
    """The result as a RESULTS.md block (`python -m tools.readme_results paste folder-identity …`)."""
    from classweights.machine import line

    same = "**byte-identical**" if results["goals"] and all(results["goals"].values()) else "**NOT identical**"
    return (f"| compared | identical |\n| --- | --- |\n"
            f"| every array of the splits (class names aside) | {'yes' if results['identical_splits'] else 'NO'} |\n"
            f"| the {results['outputs_compared']} model directories (saved model, test probabilities, training "
            f"curves: dvc.lock's hashes) | {'yes' if results['identical_outputs'] else 'NO'} |\n"
            f"| the three arms' headline metrics | {'yes' if results['identical_headline_metrics'] else 'NO'} |\n\n"
            f"The two runs are {same}. {results['images']} images; the folder's `dvc add` took "
            f"{results['dvc_add_s']:.0f} s and its `dvc repro` {results['folder_repro_s']:.0f} s, against "
            f"{results['fashion_mnist_repro_s']:.0f} s from the idx files ({results['date']}).\n\n"
            f"{line(results['machine'])}\n")


def main():
    args = parse_args()
    train = {"seeds": list(range(args.seeds)), "epochs": args.epochs}
    from classweights.machine import describe

    results = {"date": time.strftime("%Y-%m-%d"), "train": train, "machine": describe(1)}
    with tempfile.TemporaryDirectory() as tmp:
        idx = make_project(Path(tmp) / "idx", {"data": {"source": "fashion-mnist", "path": args.data_dir},
                                               "train": train})
        results["fashion_mnist_repro_s"] = timed_repro(idx)

        folder = make_project(Path(tmp) / "folder", {"data": {"source": "folder", "path": "data/input/fashion"},
                                                     "train": train})
        from classweights.datasets import load_fashion_mnist

        started = time.perf_counter()
        data = shipped_params({"data": {"source": "fashion-mnist", "path": args.data_dir}}).data
        arrays, _ = load_fashion_mnist(data, tmp)
        export_folder(arrays, folder_names(), folder / "data/input/fashion")
        results["images"] = int(len(arrays["y_train"]) + len(arrays["y_test"]))
        results["export_s"] = time.perf_counter() - started
        started = time.perf_counter()
        dvc(folder, "add", "data/input/fashion", timeout=3600)
        commit(folder, "the data as a folder of PNGs")
        results["dvc_add_s"] = time.perf_counter() - started
        results["folder_repro_s"] = timed_repro(folder)

        a, b = output_hashes(idx), output_hashes(folder)
        results["outputs_compared"] = sum(len(outs) for outs in a.values())
        results["identical_outputs"] = a == b and bool(a)
        results["identical_splits"] = same_splits(idx, folder)
        results["identical_headline_metrics"] = all((idx / m).read_bytes() == (folder / m).read_bytes()
                                                    for m in COMPARED_METRICS)
        results["class_names"] = {name: json.loads((p / "data/provenance.json").read_text())["class_names"]
                                  for name, p in (("fashion-mnist", idx), ("folder", folder))}
    same = {key: "yes" if results[key] else "NO" for key in ("identical_splits", "identical_outputs")}
    print(f"{results['images']} images; splits identical: {same['identical_splits']}; "
          f"model directories ({results['outputs_compared']}) identical: {same['identical_outputs']}; "
          "headline metrics identical: "
          f"{'yes' if results['identical_headline_metrics'] else 'NO'}")
    results["goals"] = {"the folder source trains the same bytes as the fashion-mnist source":
                        results["identical_splits"] and results["identical_outputs"]
                        and results["identical_headline_metrics"]}
    print_goals_and_save(results, args.out)
    Path(args.out).with_suffix(".md").write_text(summary(results))


if __name__ == "__main__":
    main()
