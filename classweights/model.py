"""The notebook's CNN, trained deterministically from uint8 images. Imports TensorFlow."""
import contextlib
import json
import os
import time

import numpy as np

from classweights.params import NUM_CLASSES


@contextlib.contextmanager
def _native_stderr_silenced():
    """TensorFlow's C++ start-up logs CUDA probing on a CPU machine to fd 2, before any Python
    setting can stop it; hide fd 2 during the import only (Python errors still surface)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
with _native_stderr_silenced():
    import keras
    import tensorflow as tf
    from keras import layers

# Batches fused into one graph call: fewer Python round trips per epoch.
STEPS_PER_EXECUTION = 32
OPTIMIZERS = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}


def build_model(dropout=0.5, precision="float32"):
    """Conv 32 → pool → dropout → Conv 64 → pool → dropout → Conv 64 → Dense 128 → dropout → softmax.

    Takes raw uint8 images (n, 28, 28): scaling to [0, 1] happens inside, so a saved model
    needs no preprocessing and the input pipeline moves 4x fewer bytes. With precision
    "mixed_bfloat16" the hidden layers compute in bfloat16 (weights stay float32); the softmax
    is always float32 so that probabilities and the loss keep full precision.
    """
    hidden = keras.mixed_precision.Policy(precision)
    return keras.Sequential([
        keras.Input(shape=(28, 28), dtype="uint8"),
        layers.Rescaling(1 / 255, dtype=hidden),
        layers.Reshape((28, 28, 1), dtype=hidden),
        layers.Conv2D(32, (3, 3), activation="relu", dtype=hidden),
        layers.MaxPooling2D((2, 2), dtype=hidden),
        layers.Dropout(dropout, dtype=hidden),
        layers.Conv2D(64, (3, 3), activation="relu", dtype=hidden),
        layers.MaxPooling2D((2, 2), dtype=hidden),
        layers.Dropout(dropout, dtype=hidden),
        layers.Conv2D(64, (3, 3), activation="relu", dtype=hidden),
        layers.Flatten(dtype=hidden),
        layers.Dense(128, activation="relu", dtype=hidden),
        layers.Dropout(dropout, dtype=hidden),
        layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"),
    ])


def make_dataset(x, y, batch_size, shuffle_seed=None):
    """uint8 images and labels as a tf.data pipeline, shuffled each epoch in a seeded order.

    It shuffles indices and gathers whole batches from arrays held in memory once: shuffling
    the images one element at a time kept the two cores busy copying, and an epoch took 4.2 s
    instead of 2.6 s on 22,500 images (measured side by side in one process)."""
    images, labels = tf.constant(x), tf.constant(y.astype(np.int32))
    order = tf.data.Dataset.range(len(x))
    if shuffle_seed is not None:
        order = order.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    batches = order.batch(batch_size).map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
    return batches.prefetch(tf.data.AUTOTUNE)


def train_model(splits, train, seed, class_weight=None, callbacks=()):
    """Train the CNN on splits['x_train'] with validation on splits['x_val']; return (model, history).

    The seed fixes the initial weights, the dropout masks and the batch order, so the
    weighted and unweighted arms of one seed differ only in the loss weights.
    class_weight may come straight from JSON: Keras looks a weight up by int(label) and
    silently uses 1.0 for a key it does not find, so string keys are converted here.
    """
    if class_weight is not None:
        class_weight = {int(c): float(w) for c, w in class_weight.items()}
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build_model(train.dropout, train.precision)
    model.compile(
        optimizer=OPTIMIZERS[train.optimizer](learning_rate=train.learning_rate),
        loss="sparse_categorical_crossentropy",  # categorical cross-entropy on integer labels
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    history = model.fit(
        make_dataset(splits["x_train"], splits["y_train"], train.batch_size, shuffle_seed=seed),
        validation_data=make_dataset(splits["x_val"], splits["y_val"], train.batch_size),
        epochs=train.epochs,
        class_weight=class_weight,
        shuffle=False,  # the dataset shuffles itself, in a seeded order
        callbacks=list(callbacks),
        verbose=0,
    )
    return model, history.history


def predict_proba(model, x, batch_size=1024):
    """Class probabilities (n, 10) for uint8 images."""
    return model.predict(x, batch_size=batch_size, verbose=0)


def load_model(path):
    """Load a saved .keras model with Keras' safe mode on (no arbitrary code from the file)."""
    return keras.models.load_model(path, safe_mode=True)


def train_arm(splits, train, seed, out_dir, class_weight=None):
    """Train one (arm, seed) and write out_dir atomically: model.keras, test_proba.npz and the
    dvclive curves in live/. Interrupted, it leaves nothing under out_dir."""
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from classweights.files import atomic_path, write_arrays

    with atomic_path(out_dir) as tmp:
        live = Live(dir=str(tmp / "live"), save_dvc_exp=False, dvcyaml=None, report=None)
        started = time.perf_counter()
        model, _ = train_model(splits, train, seed, class_weight, callbacks=[DVCLiveCallback(live=live)])
        trained = time.perf_counter()
        proba = predict_proba(model, splits["x_test"])
        _log_compute_seconds(trained - started, time.perf_counter() - trained)
        model.save(tmp / "model.keras")
        write_arrays(tmp / "test_proba.npz", proba=proba)


def _log_compute_seconds(fit, predict):
    """For `make bench`: append fit and predict seconds to $CLASSWEIGHTS_TIMINGS when it is set,
    so the benchmark can tell compute from pipeline overhead. Outputs never hold timings."""
    path = os.environ.get("CLASSWEIGHTS_TIMINGS")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({"fit_s": fit, "predict_s": predict}) + "\n")
