"""Backbones: each maps the raw input (uint8 images or float32 feature vectors) to a feature
vector; classweights.model adds the head. A small registry by model.backbone: cnn, resnet, mlp,
keras:NAME (keras.applications) and python:networks.module:function (the user's code).
Imported through classweights.model, which quiets TensorFlow's start-up first."""
import contextlib
import os
import random
import re

import keras
import numpy as np
from keras import layers

from classweights.errors import UserError
from classweights.params import IMAGENET_SIZE, IMAGENET_SIZES, KERAS_PREFIX, PYTHON_PREFIX


# Images of at most this many pixels keep the seed's Flatten head (28 x 28: 3 x 3 x 64 = 576 features
# into Dense 128). Its weights grow with the image (224 x 224 would feed 52 x 52 x 64 = 173,056
# features, 22 M weights), so larger images average each feature map over the image instead
# (global average pooling, as ResNets do): 64 features at any size, and a small data set cannot be
# memorised by a huge dense layer. A fixed-size pool before Flatten would keep some layout but
# needs a pool size per image size; averaging needs none.
FLATTEN_MAX_PIXELS = 28 * 28


def image_input(input_shape, hidden):
    """uint8 images (H, W) or (H, W, C) scaled to [0, 1] as (H, W, C): a saved model takes raw pixels."""
    height, width = input_shape[:2]
    channels = input_shape[2] if len(input_shape) == 3 else 1
    return [layers.Rescaling(1 / 255, dtype=hidden), layers.Reshape((height, width, channels), dtype=hidden)]


def cnn(network, input_shape, dropout, hidden):
    """The notebook's network up to its Dense 128: Conv 32 → pool → dropout → Conv 64 → pool →
    dropout → Conv 64 → Dense 128 (FLATTEN_MAX_PIXELS says how the maps become a vector)."""
    height, width = input_shape[:2]
    to_vector = (layers.Flatten(dtype=hidden) if height * width <= FLATTEN_MAX_PIXELS
                 else layers.GlobalAveragePooling2D(dtype=hidden))
    return [
        *image_input(input_shape, hidden),
        layers.Conv2D(32, (3, 3), activation="relu", dtype=hidden),
        layers.MaxPooling2D((2, 2), dtype=hidden),
        layers.Dropout(dropout, dtype=hidden),
        layers.Conv2D(64, (3, 3), activation="relu", dtype=hidden),
        layers.MaxPooling2D((2, 2), dtype=hidden),
        layers.Dropout(dropout, dtype=hidden),
        layers.Conv2D(64, (3, 3), activation="relu", dtype=hidden),
        to_vector,
        layers.Dense(128, activation="relu", dtype=hidden),
    ]


@keras.saving.register_keras_serializable(package="classweights")
class ZeroPadShortcut(layers.Layer):
    """He et al. 2016's option A shortcut where a residual stage halves the map and doubles the
    channels: the input subsampled by 2 and zero-padded with the new channels (no weights), as
    in their CIFAR networks and Cao et al.'s ResNet-32."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def call(self, inputs):
        extra = self.channels - inputs.shape[-1]
        return keras.ops.pad(inputs[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def resnet(network, input_shape, dropout, hidden):
    """The CIFAR ResNet of He et al. 2016 (§4.2), as in Cao et al. 2019 and Menon et al. 2021:
    a 3x3 convolution of 16 channels, then three stages of n residual blocks (two 3x3
    convolutions each, batch normalisation, ReLU) with 16, 32 and 64 channels, the second and
    third starting with stride 2, then global average pooling: 6n + 2 = model.resnet_depth layers
    with weights counting the head. Convolutions without bias, He-normal initial weights."""
    blocks = (network.resnet_depth - 2) // 6
    rescaled = image_input(input_shape, hidden)
    inputs = keras.Input(shape=(*input_shape[:2], input_shape[2] if len(input_shape) == 3 else 1))

    def conv_bn(x, channels, stride=1):
        x = layers.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False,
                          kernel_initializer="he_normal", dtype=hidden)(x)
        return layers.BatchNormalization(dtype=hidden)(x)

    x = layers.ReLU(dtype=hidden)(conv_bn(inputs, 16))
    for stage, channels in enumerate((16, 32, 64)):
        for block in range(blocks):
            stride = 2 if stage and not block else 1
            shortcut = ZeroPadShortcut(channels, dtype=hidden)(x) if stride == 2 else x
            y = conv_bn(layers.ReLU(dtype=hidden)(conv_bn(x, channels, stride)), channels)
            x = layers.ReLU(dtype=hidden)(layers.Add(dtype=hidden)([y, shortcut]))
    features = layers.GlobalAveragePooling2D(dtype=hidden)(x)
    return [*rescaled, keras.Model(inputs, features, name=f"resnet{network.resnet_depth}")]


# keras.applications' models by name (ResNet50, MobileNetV3Small, ...)
APPLICATIONS = sorted(name for name in dir(keras.applications) if name[:1].isupper())
APPLICATION_MODULES = sorted(name for name in dir(keras.applications) if name[:1].islower())


@keras.saving.register_keras_serializable(package="classweights")
class ApplicationPreprocessing(layers.Layer):
    """uint8 images as a keras.applications model expects them: float RGB (grey repeated into
    three channels) through the application's own preprocess_input (its module: "resnet",
    "mobilenet_v3", ...; those that preprocess inside the model pass the pixels through)."""

    def __init__(self, module, **kwargs):
        super().__init__(**kwargs)
        if module not in APPLICATION_MODULES:
            raise ValueError(f"{module!r} is not a keras.applications module")
        self.module = module

    def call(self, images):
        x = keras.ops.cast(images, "float32")
        if len(x.shape) == 3:
            x = x[..., None]
        if x.shape[-1] == 1:
            x = keras.ops.repeat(x, 3, axis=-1)
        return getattr(keras.applications, self.module).preprocess_input(x)

    def get_config(self):
        return {**super().get_config(), "module": self.module}


def keras_application(network, input_shape, dropout, hidden):
    """keras:NAME: the keras.applications model without its top, with global average pooling,
    on the application's own preprocessing; weights from ImageNet (Keras' download and cache), a
    file under networks/, or random; frozen when model.trainable is head. The images are resized
    inside the model to the size the application expects: its ImageNet weights' size
    (IMAGENET_SIZES) with those weights, else their own size, or its smallest input if smaller."""
    import difflib

    name = network.backbone.removeprefix(KERAS_PREFIX)
    where = f"model.backbone = {network.backbone!r}"
    if name not in APPLICATIONS:
        close = difflib.get_close_matches(name, APPLICATIONS, n=3, cutoff=0.5)
        raise UserError(f"{where}: keras.applications has no {name}; "
                        + (f"close: {', '.join(close)}" if close else f"it has {', '.join(APPLICATIONS)}"))
    builder = getattr(keras.applications, name)
    imagenet = network.weights == "imagenet"
    size = (IMAGENET_SIZES.get(name, IMAGENET_SIZE),) * 2 if imagenet else tuple(input_shape[:2])
    frozen = network.trainable == "head"
    try:
        application = _application(builder, size, imagenet, frozen)
    except ValueError as error:  # smaller than its smallest input: "... should be at least 32x32 ..."
        smallest = re.search(r"at least (\d+)x(\d+)", str(error))
        if not smallest:
            raise
        size = (int(smallest[1]), int(smallest[2]))
        application = _application(builder, size, imagenet, frozen)
    except Exception as error:  # Keras' download: "URL fetch failure on <url>: ..."
        url = re.search(r"URL fetch failure on (\S+):", str(error))
        if not url:
            raise
        home = os.environ.get("KERAS_HOME", "~/.keras")
        raise UserError(f"model.weights = 'imagenet': could not download {name}'s weights ({url[1]}); without "
                        f"a network, put that file in {home}/models/{url[1].rsplit('/', 1)[-1]}") from None
    if network.weights not in (None, "imagenet"):
        load_weights_file(application, network.weights, name)
    application.trainable = not frozen
    resize = [layers.Resizing(*size, dtype="float32")] if size != tuple(input_shape[:2]) else []
    return [ApplicationPreprocessing(builder.__module__.rsplit(".", 1)[-1]), *resize, application]


def _application(builder, size, imagenet, frozen):
    with drawn_from(FROZEN_SEED) if frozen else contextlib.nullcontext():
        return builder(include_top=False, weights="imagenet" if imagenet else None, input_shape=(*size, 3),
                       pooling="avg")


# A frozen backbone is one network for every seed: its features are computed once (stages/
# frozen_features.py) and every (arm, seed) trains a head on them. With random initial weights
# (model.weights null) it is drawn from this seed; the training's seed still draws the head.
FROZEN_SEED = 0


@contextlib.contextmanager
def drawn_from(seed):
    """Layers built inside draw their initial weights from seed, and leave the training's random
    state as it was: Keras' initialisers and dropout seeds draw from Python's (and NumPy's)
    generator, so the head and the dropout masks that follow are those the training's seed gives
    whether or not a frozen backbone was built before them."""
    saved = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])


def load_weights_file(application, path, name):
    """A weights file (Keras' .weights.h5, from save_weights) for the application, or one line."""
    where = f"model.weights = {path!r}"
    if not os.path.isfile(path):
        raise UserError(f"{where}: not found; save one with model.save_weights('{path}') and `dvc add` it")
    import warnings

    try:
        with warnings.catch_warnings():  # a file of another architecture: a warning per layer, then the error
            warnings.simplefilter("ignore", UserWarning)
            application.load_weights(path)
    except (ValueError, OSError, KeyError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{where}: not weights of keras.applications.{name} without its top "
                        f"(include_top=False) ({reason[:200]})") from None


def mlp(network, input_shape, dropout, hidden):
    """Feature vectors standardised (a Normalization layer, adapted on the training split by
    train_model, so a saved model takes raw rows), then Dense ReLU layers of network.mlp_hidden
    units with dropout between them."""
    out = [layers.Normalization(dtype="float32")]
    for i, units in enumerate(network.mlp_hidden):
        out += [layers.Dropout(dropout, dtype=hidden)] if i else []
        out.append(layers.Dense(units, activation="relu", dtype=hidden))
    return out


def input_layers(input_shape, hidden):
    """What every backbone but the cnn and the mlp receives: images scaled to [0, 1] as (H, W, C),
    or feature vectors standardised; with the shape that reaches the backbone."""
    if len(input_shape) == 1:
        return [layers.Normalization(dtype="float32")], tuple(input_shape)
    return image_input(input_shape, hidden), (*input_shape[:2], input_shape[2] if len(input_shape) == 3 else 1)


def user_backbone(network, input_shape, dropout, hidden):
    """python:networks.module:function: the user's function called with the input shape; it must
    return an uncompiled Keras model from that input to a feature vector (UserError otherwise)."""
    import importlib

    spec = network.backbone
    module_name, function_name = spec.removeprefix(PYTHON_PREFIX).split(":")
    where = f"model.backbone = {spec!r}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise UserError(f"{where}: no module {module_name} ({module_name.replace('.', '/')}.py not found)") from None
        raise UserError(f"{where}: importing {module_name} failed: {error}") from None
    except Exception as error:
        raise UserError(f"{where}: importing {module_name} raised {type(error).__name__}: {error}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UserError(f"{where}: {module_name} has no function {function_name}")
    before, shape = input_layers(input_shape, hidden)
    try:
        model = function(shape)
    except Exception as error:
        raise UserError(f"{where}: {function_name}({shape}) raised {type(error).__name__}: {error}") from None
    check_features_model(model, where, f"{function_name}({shape})")
    return [*before, model]


def check_features_model(model, where, what):
    """A backbone must be a Keras model whose output is one feature vector per input and not a
    classifier's probabilities."""
    if not isinstance(model, keras.Model):
        raise UserError(f"{where}: {what} returned {type(model).__name__}, not a Keras model; return "
                        "keras.Model(inputs, features)")
    output = model.outputs[0].shape if len(model.outputs) == 1 else None
    if output is None or len(output) != 2:
        raise UserError(f"{where}: {what} returns a model whose output is {output if output else 'several tensors'} "
                        "per batch, not one feature vector per input (shape (None, F)); end it with Flatten "
                        "or global pooling")
    last = model.layers[-1]
    if isinstance(last, layers.Softmax) or getattr(getattr(last, "activation", None), "__name__", "") == "softmax":
        raise UserError(f"{where}: {what} returns a model that ends in a softmax layer ({last.name}); return "
                        "features: the head is ours (remove the classification layer)")


# name -> function(model params, input shape, dropout, dtype policy) -> the backbone's layers, from
# the raw input (uint8 images or float32 feature vectors) to a feature vector
BACKBONES = {"cnn": cnn, "resnet": resnet, "mlp": mlp}  # and keras:NAME, python:... (backbone_layers)


# model.backbone of a head trained on a frozen backbone's features (classweights.frozen): no layers
# before the head. Not a value params.yaml accepts.
PRECOMPUTED = "precomputed features"


def backbone_layers(network, input_shape, dropout, hidden):
    """The backbone's layers for network.backbone (None: the cnn)."""
    name = "cnn" if network is None else network.backbone
    if name == PRECOMPUTED:
        return []
    if name.startswith(PYTHON_PREFIX):
        return user_backbone(network, input_shape, dropout, hidden)
    if name.startswith(KERAS_PREFIX):
        return keras_application(network, input_shape, dropout, hidden)
    return BACKBONES[name](network, input_shape, dropout, hidden)


def input_dtype(input_shape):
    """Images come as raw uint8 pixels (H, W[, C]), feature vectors (F,) as float32."""
    return "float32" if len(input_shape) == 1 else "uint8"
