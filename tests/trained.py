"""Tiny in-process trainings that several test modules compare with, each made once per test
process (a pytest plugin, loaded by tests/conftest.py, so that test_model, test_remedies and
test_decoupled share one of each): seed 0 on the same splits, 2 epochs, unweighted, weighted by
the loss and weighted by sampling, with the weights after each epoch. Tests read them and never
change them; a test that needs a training of its own to compare with trains it itself."""
from types import SimpleNamespace

import numpy as np
import pytest

from tests.fakes import fake_images
from tools.sandbox import shipped_params

TRAIN = shipped_params({"train": {"epochs": 2, "batch_size": 32}}).train
WEIGHTS = {c: (5.0 if c >= 5 else 0.2) for c in range(10)}  # the rare classes weigh more


@pytest.fixture(scope="session")
def splits():
    """40 training images of each of classes 0-4 and 8 of each of 5-9; 2 and 3 a class to validate and test."""
    rng = np.random.default_rng(0)
    y_train = rng.permutation(np.repeat(np.arange(10), [40] * 5 + [8] * 5)).astype(np.uint8)
    y_val = np.repeat(np.arange(10), 2).astype(np.uint8)
    y_test = np.repeat(np.arange(10), 3).astype(np.uint8)
    return {"x_train": fake_images(y_train, 1), "y_train": y_train, "x_val": fake_images(y_val, 2), "y_val": y_val,
            "x_test": fake_images(y_test, 3), "y_test": y_test}


def weighted(apply="loss"):
    """The shipped weighted arm's remedy: cross-entropy with the class weights applied by `apply` from the start."""
    from classweights.remedy import Remedy

    return Remedy.of(shipped_params({"weights": {"apply": apply}}))


def seed_0(splits, class_weight=None, remedy=None):
    """train_model(splits, TRAIN, seed 0, ...): its model, history and weights after each epoch
    (remedy None: the unweighted arm's)."""
    from classweights.model import train_model  # TensorFlow: imported by the tests that train, not by every run
    from classweights.remedy import Remedy
    from tests.callbacks import Snapshots

    snapshots = Snapshots()
    model, history = train_model(splits, TRAIN, 0, class_weight, remedy or Remedy.unweighted(), callbacks=[snapshots])
    return SimpleNamespace(model=model, history=history, after_epoch=snapshots.after_epoch)


@pytest.fixture(scope="session")
def trained_unweighted(splits):
    return seed_0(splits)


@pytest.fixture(scope="session")
def trained_by_loss(splits):
    """WEIGHTS on the loss from the first epoch (train_model's default defer_epoch, 1)."""
    return seed_0(splits, WEIGHTS, weighted("loss"))


@pytest.fixture(scope="session")
def trained_by_sampling(splits):
    """WEIGHTS by class-balanced sampling from the first epoch."""
    return seed_0(splits, WEIGHTS, weighted("sampling"))
