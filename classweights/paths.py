"""Where each stage reads and writes; dvc.yaml names the same paths."""
from pathlib import Path

PARAMS_CHECKED = Path("data/params_checked.json")
RAW = Path("data/raw.npz")
PROVENANCE = Path("data/provenance.json")
DOWNLOADS = Path("data/downloads")
SPLITS = Path("data/splits.npz")
CLASS_COUNTS = Path("data/class_counts.json")
WEIGHTS = Path("data/class_weights.json")
# model.trainable head: the frozen backbone's features of every split, computed once (an archive
# without arrays otherwise: stages/frozen_features.py)
FROZEN_FEATURES = Path("data/frozen_features.npz")
MODELS = Path("models")
METRICS = Path("metrics")
REPORTS = Path("reports")
MACHINE = METRICS / "details" / "machine.json"  # where the run was made (classweights.machine)
# The trained arms, as named in models/<arm>/, in the train_<arm> stages of dvc.yaml and in
# `stages.train --arm` (tests/test_dvc_yaml.py checks dvc.yaml against this).
ARMS = ("unweighted", "weighted")
TRAIN_PREDICTIONS = "train_pred.npz"  # in each model_dir: the predicted class of every training image
HISTORY = "history.json"  # in each model_dir: Keras' per-epoch loss and accuracy, training and validation
# Wall-clock time, the one thing a re-run does not reproduce byte for byte: each training's fit
# seconds in a file of their own (not in the model's folder, whose bytes the same params, code and
# machine reproduce), and evaluate's mean per training per arm. Every such path has "seconds" in it.
SECONDS = METRICS / "seconds"
TRAINING_SECONDS = METRICS / "training_seconds.json"


def model_dir(arm, seed):
    """models/<arm>/seed_<seed>: one training's model, test probabilities and history."""
    return MODELS / arm / f"seed_{seed}"


def seconds_file(arm, seed):
    """metrics/seconds/<arm>/seed_<seed>.json: one training's fit seconds."""
    return SECONDS / arm / f"seed_{seed}.json"
