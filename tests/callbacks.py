"""Keras callbacks that read a training as it runs: its weights as it begins, after each epoch."""
import keras
import numpy as np


class Started(Exception):
    """Raised by FirstWeights(stop=True) once it holds the weights: the fit itself is not needed."""


class FirstWeights(keras.callbacks.Callback):
    """The trained network's weights as the first fit begins, by layer position; with stop=True,
    the fit ends there (raising Started), before TensorFlow traces and runs a training step."""

    def __init__(self, stop=False):
        super().__init__()
        self.stop = stop

    def on_train_begin(self, logs=None):
        if not hasattr(self, "layers"):
            self.layers = [[w.copy() for w in layer.get_weights()] for layer in self.model.layers]
        if self.stop:
            raise Started


class Snapshots(keras.callbacks.Callback):
    """The model's weights at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.after_epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.after_epoch.append([w.copy() for w in self.model.get_weights()])


def same(first, second):
    return all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
