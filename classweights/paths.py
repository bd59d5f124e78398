"""Where each stage reads and writes; dvc.yaml names the same paths."""
from pathlib import Path

PARAMS_CHECKED = Path("data/params_checked.json")
RAW = Path("data/raw.npz")
PROVENANCE = Path("data/provenance.json")
DOWNLOADS = Path("data/downloads")
SPLITS = Path("data/splits.npz")
CLASS_COUNTS = Path("data/class_counts.json")
WEIGHTS = Path("data/class_weights.json")
MODELS = Path("models")
METRICS = Path("metrics")
REPORTS = Path("reports")


def model_dir(arm, seed):
    """models/<arm>/seed_<seed>: one training's model, test probabilities and curves."""
    return MODELS / arm / f"seed_{seed}"
