"""Imbalance profiles (applied to the training pool only) and the stratified validation split."""
import numpy as np
from sklearn.model_selection import train_test_split

from classweights.errors import UserError
from classweights.params import NUM_CLASSES


def target_counts(available, imbalance):
    """Images to keep per class under the profile, from the counts available per class.

    - none: every image (capped at n_max if set).
    - step (Buda et al. 2018): majority classes keep n_max, minority classes n_max / ratio.
    - longtail (Cui et al. 2019): the i-th class of class_order keeps n_max * ratio^(-i / (K - 1)).
    n_max defaults to the smallest class in the pool, so every class can supply it.
    """
    available = np.asarray(available)
    n_max = imbalance.n_max if imbalance.n_max is not None else int(available.min())
    if imbalance.profile == "none":
        wanted = np.minimum(available, n_max) if imbalance.n_max is not None else available.copy()
    elif imbalance.profile == "step":
        wanted = np.full(NUM_CLASSES, n_max)
        wanted[imbalance.minority_classes] = round(n_max / imbalance.ratio)
    else:
        rank = np.argsort(imbalance.class_order)  # each class's position in class_order
        wanted = np.rint(n_max * imbalance.ratio ** (-rank / (NUM_CLASSES - 1))).astype(int)
    short = np.flatnonzero(wanted > available)
    if short.size:
        c = short[0]
        raise UserError(f"imbalance.n_max = {n_max}: class {c} has only {available[c]} training images; "
                        f"allowed: at most {int(available.min())} (unset it to use what the data allows)")
    empty = np.flatnonzero(wanted < 2)
    if empty.size:
        c = empty[0]
        raise UserError(f"imbalance.ratio = {imbalance.ratio}: leaves class {c} with {wanted[c]} training "
                        f"image(s) from n_max = {n_max}; allowed: ratio at most {n_max / 2:g} "
                        "(each class needs 2, one for validation)")
    return wanted.astype(int)


def subsample(labels, wanted, seed):
    """Indices (sorted) of a seeded random subset holding wanted[c] images of each class c."""
    rng = np.random.default_rng(seed)
    keep = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c, n in enumerate(wanted)]
    return np.sort(np.concatenate(keep))


def stratified_split(labels, val_fraction, seed):
    """(train indices, val indices), each class split in proportion; not Keras' validation_split,
    which takes the last rows and so would miss whole classes of sorted data."""
    indices = np.arange(len(labels))
    try:
        train, val = train_test_split(indices, test_size=val_fraction, stratify=labels, random_state=seed)
    except ValueError as error:
        raise UserError(f"split.val_fraction = {val_fraction}: cannot split {len(labels)} images "
                        f"into stratified training and validation parts ({error})") from None
    return np.sort(train), np.sort(val)


def make_splits(raw, imbalance, split):
    """Unbalance the training pool, split off validation, leave the test set as shipped."""
    available = np.bincount(raw["y_train"], minlength=NUM_CLASSES)
    kept = subsample(raw["y_train"], target_counts(available, imbalance), imbalance.seed)
    x_pool, y_pool = raw["x_train"][kept], raw["y_train"][kept]
    train, val = stratified_split(y_pool, split.val_fraction, split.seed)
    return {"x_train": x_pool[train], "y_train": y_pool[train],
            "x_val": x_pool[val], "y_val": y_pool[val],
            "x_test": raw["x_test"], "y_test": raw["y_test"]}


def class_counts(labels):
    """Images per class as {class id (str): count}, every class listed."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    return {str(c): int(n) for c, n in enumerate(counts)}


def minority_classes(imbalance):
    """The classes the question is about: step's minority classes, longtail's tail half."""
    if imbalance.profile == "step":
        return sorted(imbalance.minority_classes)
    if imbalance.profile == "longtail":
        return sorted(imbalance.class_order[NUM_CLASSES // 2:])
    return []
