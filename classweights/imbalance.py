"""Imbalance profiles (applied to the training pool only), the stratified validation split, and a
stratified held-out test split for data that has no test half."""
import numpy as np
from sklearn.model_selection import train_test_split

from classweights.errors import UserError
from classweights.params import check_class_ids

# With the data's own counts (profile none), a class is a minority class when it has at most this
# share of the largest class's training images: balanced data has none, a long tail its tail.
MINORITY_SHARE = 0.5


def target_counts(available, imbalance, names=None):
    """Images to keep per class under the profile, from the counts available per class.

    - none: every image (capped at n_max if set).
    - step (Buda et al. 2018): majority classes keep n_max, minority classes n_max / ratio.
    - longtail (Cui et al. 2019): the i-th class of class_order keeps n_max * ratio^(-i / (K - 1)).
    n_max defaults to the smallest class in the pool, so every class can supply it.
    """
    available = np.asarray(available)
    num_classes = len(available)
    name = (lambda c: names[c]) if names is not None else (lambda c: c)
    n_max = imbalance.n_max if imbalance.n_max is not None else int(available.min())
    if imbalance.profile == "none":
        wanted = np.minimum(available, n_max) if imbalance.n_max is not None else available.copy()
    elif imbalance.profile == "step":
        wanted = np.full(num_classes, n_max)
        wanted[imbalance.minority_classes] = round(n_max / imbalance.ratio)
    else:
        rank = np.argsort(imbalance.class_order)  # each class's position in class_order
        wanted = np.rint(n_max * imbalance.ratio ** (-rank / (num_classes - 1))).astype(int)
    short = np.flatnonzero(wanted > available)
    if short.size:
        c = short[0]
        raise UserError(f"imbalance.n_max = {n_max}: class {name(c)} has only {available[c]} training images; "
                        f"allowed: at most {int(available.min())} (unset it to use what the data allows)")
    empty = np.flatnonzero(wanted < 2)
    if empty.size:
        c = empty[0]
        raise UserError(f"imbalance.ratio = {imbalance.ratio}: leaves class {name(c)} with {wanted[c]} training "
                        f"image(s) from n_max = {n_max}; allowed: ratio at most {n_max / 2:g} "
                        "(each class needs 2, one for validation)")
    return wanted.astype(int)


def subsample(labels, wanted, seed):
    """Indices (sorted) of a seeded random subset holding wanted[c] images of each class c."""
    rng = np.random.default_rng(seed)
    keep = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c, n in enumerate(wanted)]
    return np.sort(np.concatenate(keep))


def stratified_split(labels, fraction, seed, key="split.val_fraction", parts="training and validation"):
    """(kept indices, split-off indices), each class split in proportion; not Keras' validation_split,
    which takes the last rows and so would miss whole classes of sorted data."""
    indices = np.arange(len(labels))
    try:
        kept, split_off = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as error:
        raise UserError(f"{key} = {fraction}: cannot split {len(labels)} images "
                        f"into stratified {parts} parts ({error})") from None
    return np.sort(kept), np.sort(split_off)


def make_splits(raw, imbalance, split):
    """Hold out a stratified test split if the data has no test half (it keeps the data's own
    imbalance), unbalance the training pool by the profile, split off validation."""
    names = [str(name) for name in raw["class_names"]]
    check_class_ids(imbalance, len(names))
    x, y, x_test, y_test = raw["x_train"], raw["y_train"], raw["x_test"], raw["y_test"]
    if not len(y_test):
        pool, test = stratified_split(y, split.test_fraction, split.seed, "split.test_fraction", "training and test")
        x, y, x_test, y_test = x[pool], y[pool], x[test], y[test]
    available = np.bincount(y, minlength=len(names))
    kept = subsample(y, target_counts(available, imbalance, names), imbalance.seed)
    x_pool, y_pool = x[kept], y[kept]
    train, val = stratified_split(y_pool, split.val_fraction, split.seed)
    return {"x_train": x_pool[train], "y_train": y_pool[train],
            "x_val": x_pool[val], "y_val": y_pool[val],
            "x_test": x_test, "y_test": y_test}


def class_counts(labels, names):
    """Images per class as {class name: count}, every class listed."""
    counts = np.bincount(labels, minlength=len(names))
    return {name: int(n) for name, n in zip(names, counts)}


def minority_classes(imbalance, train_counts, names):
    """The names of the classes the question is about, and the rule that chose them: step's
    minority classes, longtail's tail half, or with the data's own counts (profile none) every
    class with at most MINORITY_SHARE of the largest class's training images."""
    if imbalance.profile == "step":
        return [names[c] for c in sorted(imbalance.minority_classes)], "imbalance.minority_classes, the step profile's"
    if imbalance.profile == "longtail":
        tail = sorted(imbalance.class_order[len(names) // 2:])
        return [names[c] for c in tail], "the tail half of imbalance.class_order"
    largest = max(train_counts)
    return ([name for name, n in zip(names, train_counts) if n <= MINORITY_SHARE * largest],
            f"every class with at most {MINORITY_SHARE:.0%} of the largest class's training images")
