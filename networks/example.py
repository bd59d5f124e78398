"""An example of your own backbone: `model.backbone: python:networks.example:small_cnn`."""
import keras
from keras import layers


def small_cnn(input_shape):
    """Called with the input shape: images (H, W, C) scaled to [0, 1], or feature vectors (F,)
    already standardised. Returns an uncompiled Keras model from that input to a feature vector;
    the project adds the head (no softmax, no class layer here)."""
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(16, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    features = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, features, name="small_cnn")
