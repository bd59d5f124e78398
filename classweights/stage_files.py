"""Where each stage reads and writes; dvc.yaml names the same paths."""
from pathlib import Path

RAW = Path("data/raw.npz")
PROVENANCE = Path("data/provenance.json")
DOWNLOADS = Path("data/downloads")
SPLITS = Path("data/splits.npz")
CLASS_COUNTS = Path("metrics/class_counts.json")
WEIGHTS = Path("data/class_weights.json")
MODELS = Path("models")
ARMS = ("unweighted", "weighted")
METRICS = Path("metrics")
REPORTS = Path("reports")
SPLIT_ARRAYS = ["x_train", "y_train", "x_val", "y_val", "x_test", "y_test"]


def arm_dir(arm, seed):
    return MODELS / arm / f"seed_{seed}"
