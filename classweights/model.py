"""The network (a backbone and the head each remedy needs), trained deterministically. Imports TensorFlow."""
import contextlib
import io
import json
import os
import time
import zipfile

import numpy as np

from classweights.params import check_backbone
from classweights.remedy import COSINE, SOFTMAX, Remedy


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


# 3: TensorFlow's C++ logs only fatal errors. On a CPU-only machine it logs a failed CUDA probe and
# a graph-version notice at ERROR level on every training; real failures still reach Python as
# exceptions. Set TF_CPP_MIN_LOG_LEVEL=0 in the environment to see everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
with _native_stderr_silenced():
    import keras
    import tensorflow as tf
    from keras import layers

from classweights.backbones import backbone_layers, input_dtype  # noqa: E402 (after TensorFlow's quiet start)

# Thread policy: train.threads intra-op and inter-op threads per training, 1 by default. The thread
# count can change the trained numbers, so it is a param of every train stage: one thread keeps
# results independent of the machine's cores and of how many trainings run at once, and this small
# CNN keeps barely one core busy anyway (`make bench` compares it with TensorFlow's default, 0).
# Everything else (predictions in tests and the benchmark) runs on one thread too.
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)


def use_threads(threads):
    """Set TensorFlow's thread pools (0: its default) before the first operation of this process;
    after that they are fixed, and asking for another count is an error."""
    threading = tf.config.threading
    if (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()) != (threads,) * 2:
        threading.set_intra_op_parallelism_threads(threads)
        threading.set_inter_op_parallelism_threads(threads)


# Batches fused into one graph call: fewer Python round trips per epoch.
STEPS_PER_EXECUTION = 32
OPTIMIZERS = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}


@keras.saving.register_keras_serializable(package="classweights")
class CoupledSGD(keras.optimizers.SGD):
    """SGD as PyTorch's torch.optim.SGD, which Cao et al. 2019 train with (momentum 0.9, weight decay
    2e-4): the weight decay is L2 added to the gradient before momentum (coupled), on every trainable
    variable, g = ∇ + λ·w; the momentum buffer holds gradients, b = μ·b + g, and the step is w −= rate·b,
    so a change of rate (warm-up, a step decay) acts on the whole step at once. Keras' own SGD takes
    decoupled decay (w −= rate·λ·w outside the momentum) and keeps the rate inside its buffer; with a
    constant rate and no decay the two give the same updates."""

    def __init__(self, coupled_weight_decay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.coupled_weight_decay = coupled_weight_decay

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = keras.ops.cast(learning_rate, variable.dtype)
        gradient = keras.ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay:
            gradient = gradient + keras.ops.cast(self.coupled_weight_decay, variable.dtype) * variable
        if self.momentum:
            buffer = self.momentums[self._get_variable_index(variable)]
            self.assign(buffer, keras.ops.cast(self.momentum, variable.dtype) * buffer + gradient)
            gradient = buffer
        self.assign_sub(variable, gradient * learning_rate)

    def get_config(self):
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}


def make_optimizer(train):
    """The optimizer of train.optimizer at train.learning_rate (a schedule then sets each epoch's
    rate: scheduled_callbacks); sgd with train.momentum and train.weight_decay."""
    if train.optimizer == "sgd":
        return CoupledSGD(learning_rate=train.learning_rate, momentum=train.momentum,
                          coupled_weight_decay=train.weight_decay)
    return OPTIMIZERS[train.optimizer](learning_rate=train.learning_rate)


def scheduled_callbacks(train, callbacks):
    """callbacks, and Keras' LearningRateScheduler when the rate changes by epoch: it sets
    learning_rate_at(epoch) at each epoch's start from the epoch's absolute number (a fit started at
    initial_epoch included) and records the rate as history's learning_rate."""
    from classweights.schedule import is_scheduled, learning_rate_at

    if not is_scheduled(train):
        return list(callbacks)  # the default: no callback, so the training is the one before schedules
    return [*callbacks, keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate_at(train, epoch + 1))]


def standardise(model, x_train):
    """Adapt every Normalization layer to the training split (only it: validation and test rows
    must not leak into the model)."""
    for layer in model.layers:
        if isinstance(layer, layers.Normalization):
            layer.adapt(x_train)


def build_model(dropout=0.5, precision="float32", input_shape=(28, 28), num_classes=10, network=None):
    """The backbone (network: model params; None: the cnn), then the head every arm starts from:
    dropout → Dense(num_classes) softmax. The remedy arms swap the softmax for the head their
    loss needs, with the same initial weights (remedy_networks).

    Images come as raw uint8, input_shape (H, W) grey or (H, W, 3) colour: scaling to [0, 1]
    happens inside, so a saved model needs no preprocessing and the input pipeline moves 4x fewer
    bytes. 28 x 28 grey with 10 classes and the cnn is the seed's layout exactly. With precision
    "mixed_bfloat16" the hidden layers compute in bfloat16 (weights stay float32); the softmax
    is always float32 so that probabilities and the loss keep full precision.
    """
    hidden = keras.mixed_precision.Policy(precision)
    return keras.Sequential([
        keras.Input(shape=tuple(input_shape), dtype=input_dtype(input_shape)),
        *backbone_layers(network, input_shape, dropout, hidden),
        layers.Dropout(dropout, dtype=hidden),
        layers.Dense(num_classes, activation="softmax", dtype="float32"),
    ])


def make_dataset(x, y, batch_size, shuffle_seed=None, sampling_weight=None):
    """uint8 images and labels as a tf.data pipeline, shuffled each epoch in a seeded order.

    It shuffles indices and gathers whole batches from arrays held in memory once: shuffling
    the images one element at a time kept the two cores busy copying, and an epoch took 4.2 s
    instead of 2.6 s on 22,500 images (measured side by side in one process).

    With sampling_weight ({class: weight}) an epoch instead draws len(x) images with
    replacement, each with probability proportional to its class's weight: class-balanced
    batches, as many per epoch as without sampling, in an order fixed by shuffle_seed.
    """
    images, labels = tf.constant(x), tf.constant(y.astype(np.int32))
    if sampling_weight is not None:
        order = sampled_batches(y, sampling_weight, shuffle_seed, batch_size)
    else:
        order = tf.data.Dataset.range(len(x))
        if shuffle_seed is not None:
            order = order.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
        order = order.batch(batch_size)
    batches = order.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
    return batches.prefetch(tf.data.AUTOTUNE)


def sampling_probabilities(y, class_weight):
    """Each image's chance to be drawn: its class's weight, normalised over all images."""
    weight = np.array([float(class_weight[int(c)]) for c in range(len(class_weight))])[y]
    return weight / weight.sum()


def sampled_batches(y, class_weight, seed, batch_size):
    """Batches of image indices, len(y) indices per epoch, drawn with replacement by
    sampling_probabilities; new draws each epoch, the same sequence of epochs for the same seed."""
    cumulative = tf.constant(np.cumsum(sampling_probabilities(y, class_weight)))
    last = len(y) - 1
    span = 2 ** 32  # Dataset.random yields 32 random bits (as int64): uniform draws in [0, 1)

    def to_index(bits):
        uniform = tf.cast(tf.math.floormod(bits, span), tf.float64) / span
        return tf.minimum(tf.searchsorted(cumulative, uniform, side="right"), last)

    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(len(y))
    return draws.batch(batch_size).map(to_index)


def train_model(splits, train, seed, class_weight=None, remedy=Remedy(), callbacks=(), network=None):
    """Train the network on splits['x_train'] with validation on splits['x_val']; return (model, history).

    network (model params; None: the cnn) chooses the backbone. The seed fixes the initial
    weights, the dropout masks and the batch order, so the arms of one seed differ only in the
    remedy (classweights.remedy.Remedy; the default: the unweighted arm's):
    its apply "loss" weighs each image's loss by its class weight; "sampling" keeps the
    loss unweighted and draws class-balanced batches (make_dataset); "none" uses no weights.
    class_weight may come straight from JSON: Keras looks a weight up by int(label) and
    silently uses 1.0 for a key it does not find, so string keys are converted here.

    A loss other than cross-entropy, or weights from a later epoch, take the remedy path:
    see train_remedy. The returned model outputs probabilities.
    """
    if class_weight is not None:
        class_weight = {int(c): float(w) for c, w in class_weight.items()}
    use_threads(train.threads)
    loss_weight = class_weight if remedy.apply == "loss" else None
    sampling_weight = class_weight if remedy.apply == "sampling" else None
    keras.backend.clear_session(free_memory=False)  # layer names restart, so a saved config never
    keras.utils.set_random_seed(seed)                  # depends on earlier trainings in this process
    tf.config.experimental.enable_op_determinism()
    input_shape = splits["x_train"].shape[1:]
    if network is not None:
        check_backbone(network, input_shape)
    model = build_model(train.dropout, train.precision, input_shape, num_classes(splits), network)
    standardise(model, splits["x_train"])
    if not remedy.plain_fit:
        return train_remedy(model, splits, train, seed, class_weight, remedy, callbacks)
    model.compile(
        optimizer=make_optimizer(train),
        loss="sparse_categorical_crossentropy",  # categorical cross-entropy on integer labels
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    history = model.fit(
        make_dataset(splits["x_train"], splits["y_train"], train.batch_size, shuffle_seed=seed,
                     sampling_weight=sampling_weight),
        validation_data=make_dataset(splits["x_val"], splits["y_val"], train.batch_size),
        epochs=train.epochs,
        class_weight=loss_weight,
        shuffle=False,  # the dataset shuffles itself, in a seeded order
        callbacks=scheduled_callbacks(train, callbacks),
        verbose=0,
    )
    return model, history.history


def num_classes(splits):
    """K: the data's class names when the splits carry them (the pipeline's do), else the largest label + 1."""
    if "class_names" in splits:
        return len(splits["class_names"])
    return int(max(splits["y_train"].max(), splits["y_val"].max())) + 1


@keras.saving.register_keras_serializable(package="classweights")
class CosineDense(layers.Layer):
    """LDAM's normalised last layer: the cosine between the features and each class's weight vector."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="kernel")

    def call(self, inputs):
        features = keras.ops.normalize(keras.ops.cast(inputs, self.compute_dtype), axis=-1)
        return keras.ops.matmul(features, keras.ops.normalize(self.kernel, axis=0))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def remedy_networks(base, head):
    """(trained, predicting) for a remedy's head (classweights.remedy.Head) other than the softmax:
    the base network's layers with a head that gives logits (COSINE: cosines) to train on, and
    the same layers followed by the softmax (COSINE: of scale · cosine), whose probabilities are
    predicted and saved. The head starts from the base network's initial output weights, so every
    arm of a seed starts from the same weights (the cosine layer has no bias: it takes the kernel alone)."""
    softmax_head = base.layers[-1]
    classes = softmax_head.units
    layer = CosineDense(classes, dtype="float32") if head.kind == COSINE else layers.Dense(classes, dtype="float32")
    trained = keras.Sequential([keras.Input(shape=base.inputs[0].shape[1:], dtype=base.inputs[0].dtype),
                                *base.layers[:-1], layer])
    layer.set_weights(softmax_head.get_weights()[:len(layer.weights)])
    scale = [layers.Rescaling(head.scale, dtype="float32")] if head.kind == COSINE else []
    predicting = keras.Sequential([keras.Input(shape=base.inputs[0].shape[1:], dtype=base.inputs[0].dtype),
                                   *trained.layers, *scale, layers.Softmax(dtype="float32")])
    return trained, predicting


def train_remedy(base, splits, train, seed, class_weight, remedy, callbacks):
    """Train the remedy arm: its loss on its head from the first epoch, the class weights (on the
    loss or by sampling) from epoch remedy.defer_epoch on. Epochs before defer_epoch are the very
    same fit as the unweighted arm's (same data order, same ops), so with cross-entropy the
    model after them is the unweighted arm's model after as many epochs; the second fit
    continues it with its optimizer state (momentum, iterations), and a learning-rate schedule
    sets each epoch's rate by the epoch's number in either fit. Returns (model giving
    probabilities, history)."""
    from classweights.losses import training_counts

    keras_loss = remedy.keras_loss(training_counts(splits["y_train"], base.layers[-1].units))
    trained, predicting = (base, base) if remedy.head.kind == SOFTMAX else remedy_networks(base, remedy.head)
    trained.compile(
        optimizer=make_optimizer(train),
        loss=keras_loss or "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    fit = {"validation_data": make_dataset(splits["x_val"], splits["y_val"], train.batch_size),
           "shuffle": False, "callbacks": scheduled_callbacks(train, callbacks), "verbose": 0}
    plain = make_dataset(splits["x_train"], splits["y_train"], train.batch_size, shuffle_seed=seed)
    history, defer_epoch = {}, remedy.defer_epoch
    if defer_epoch > 1:
        history = trained.fit(plain, epochs=defer_epoch - 1, **fit).history
    if class_weight is not None and remedy.apply == "sampling":
        later = make_dataset(splits["x_train"], splits["y_train"], train.batch_size, shuffle_seed=seed,
                             sampling_weight=class_weight)
    else:
        later = plain
    rest = trained.fit(later, initial_epoch=defer_epoch - 1, epochs=train.epochs,
                       class_weight=class_weight if remedy.apply == "loss" else None, **fit).history
    history = {key: history.get(key, []) + values for key, values in rest.items()}
    return predicting, history


def head_inputs(model, x, batch_size=1024):
    """(features, kernel) of a network built by build_model: what its backbone gives for x (the
    head's input; dropout is off at prediction) and the head Dense's kernel, (features, K)."""
    backbone = keras.Model(model.inputs, model.layers[-2].output)
    features = backbone.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(features, dtype=np.float32), model.layers[-1].get_weights()[0]


def class_balanced_weight(y, classes):
    """{class: 1 / its count in y} (0 for a class without images): drawn with these weights
    (make_dataset's sampling_weight) every class is drawn equally often."""
    counts = np.bincount(y, minlength=classes)
    return {c: (1.0 / n if n else 0.0) for c, n in enumerate(counts)}


def train_head(features, y, val_features, y_val, classes, dropout, train, seed, epochs):
    """cRT's classifier (Kang et al. 2020): a new head, dropout → Dense(classes) softmax, initialised
    from seed and trained on a frozen backbone's features for `epochs` epochs on class-balanced batches
    (class_balanced_weight), with train's optimizer, learning rate and batch size. Returns
    (kernel, bias, history)."""
    use_threads(train.threads)
    keras.utils.set_random_seed(seed)  # the head's initial weights, its dropout masks, the batches
    tf.config.experimental.enable_op_determinism()
    head = keras.Sequential([keras.Input(shape=features.shape[1:]), layers.Dropout(dropout),
                             layers.Dense(classes, activation="softmax", dtype="float32")])
    head.compile(optimizer=make_optimizer(train),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"], steps_per_execution=STEPS_PER_EXECUTION)
    history = head.fit(
        make_dataset(features, y, train.batch_size, shuffle_seed=seed, sampling_weight=class_balanced_weight(y, classes)),
        validation_data=make_dataset(val_features, y_val, train.batch_size),
        epochs=epochs, shuffle=False, verbose=0)
    kernel, bias = head.layers[-1].get_weights()
    return kernel, bias, history.history


def retrain_classifier(model, splits, train, seed, epochs):
    """cRT on a build_model network: its backbone frozen, its head re-initialised and re-trained
    (train_head). The backbone runs once, in inference mode (its dropout off, batch normalisation
    with the statistics it learned), to give the features the head trains on: no gradient reaches
    it. The new head's weights replace model's (changed in place); returns (model, history).
    (evaluate trains cRT's heads with train_head on features it computes once for every arm.)"""
    features = {split: head_inputs(model, splits[f"x_{split}"])[0] for split in ("train", "val")}
    old_head = model.layers[-1]
    kernel, bias, history = train_head(features["train"], splits["y_train"], features["val"], splits["y_val"],
                                       old_head.units, model.layers[-2].rate, train, seed, epochs)
    old_head.set_weights([kernel, bias])
    return model, history


class StopOnNaN(keras.callbacks.Callback):
    """Stop a training whose loss became NaN or infinite with a UserError naming the epoch and
    the remedy (train_arm then leaves nothing behind)."""

    def __init__(self, label, remedy):
        super().__init__()
        self.label, self.remedy = label, remedy

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("loss")
        if value is not None and not np.isfinite(value):
            from classweights.errors import UserError

            raise UserError(f"{self.label}: the training loss became {value} in epoch {epoch + 1} with {self.remedy}; "
                            "a smaller train.learning_rate (or loss.ldam_scale) may keep it finite")


def predict_proba(model, x, batch_size=1024):
    """Class probabilities (n, K) for uint8 images."""
    return model.predict(x, batch_size=batch_size, verbose=0)


def load_model(path):
    """Load a saved .keras model with Keras' safe mode on (no arbitrary code from the file)."""
    return keras.models.load_model(path, safe_mode=True)


def save_model(model, path):
    """model.save, then the archive rewritten without anything that changes from run to run, so
    the same training gives the same bytes (and the same hash in dvc.lock): Keras stamps the
    save date into metadata.json, the zip entries' times, and Python object ids into the
    config's shared_object_id fields (renumbered here in order of appearance)."""
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries:
            if name == "metadata.json":
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "date_saved"}).encode()
            elif name == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    path.write_bytes(buffer.getvalue())


def _renumber_shared_objects(node, numbers):
    if isinstance(node, dict):
        return {key: (numbers.setdefault(value, len(numbers) + 1) if key == "shared_object_id"
                      else _renumber_shared_objects(value, numbers)) for key, value in node.items()}
    if isinstance(node, list):
        return [_renumber_shared_objects(value, numbers) for value in node]
    return node


class EpochLine(keras.callbacks.Callback):
    """One line per epoch on stdout, flushed at once: `train_weighted@3  epoch 4/10  loss 0.41
    val_acc 0.88  5.2 s`, so a long training shows progress (dvc repro passes it through)."""

    def __init__(self, label, epochs):
        super().__init__()
        self.label, self.epochs = label, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        print(f"{self.label}  epoch {epoch + 1}/{self.epochs}  loss {logs.get('loss', float('nan')):.2f}  "
              f"val_acc {logs.get('val_accuracy', float('nan')):.2f}  {time.perf_counter() - self.started:.1f} s",
              flush=True)


def train_arm(splits, train, seed, out_dir, class_weight=None, remedy=Remedy(), label=None, network=None, saved=None):
    """Train one (arm, seed) and write out_dir atomically: model.keras, test_proba.npz,
    train_pred.npz (the class it predicts for each training image, in inference mode: how far it
    fits its own training data) and history.json (Keras' per-epoch loss and accuracy, training and
    validation: the curves the report draws). Interrupted, it leaves nothing under out_dir; killed
    outright, it leaves out_dir/../.<name>.partial, which .gitignore and .dvcignore hide and the next run of the
    same training removes first. label names the training in the per-epoch lines; remedy (as in
    train_model) names itself if the loss turns NaN; network: the model params. saved: what the
    model saved is made from the trained one (a head trained on a frozen backbone's features: the
    backbone put back, so that the saved model takes raw inputs); its predictions are the trained
    model's on splits. Returns the seconds train_model took (building
    the network and every fit, validation included)."""
    from classweights.files import atomic_path, write_arrays, write_json
    from classweights.paths import HISTORY, TRAIN_PREDICTIONS

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        callbacks = [StopOnNaN(label or str(out_dir), remedy.phrase), EpochLine(label or str(out_dir), train.epochs)]
        started = time.perf_counter()
        model, history = train_model(splits, train, seed, class_weight, remedy, callbacks=callbacks, network=network)
        seconds = time.perf_counter() - started
        save_model(model if saved is None else saved(model), tmp / "model.keras")
        write_arrays(tmp / "test_proba.npz", proba=predict_proba(model, splits["x_test"]))
        fitted = predict_proba(model, splits["x_train"]).argmax(axis=1).astype("int32")
        write_arrays(tmp / TRAIN_PREDICTIONS, pred=fitted)
        write_json(tmp / HISTORY, history)
    return seconds
