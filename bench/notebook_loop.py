"""The seed notebook's training loop, kept as written apart from the data it is given:
float32 images scaled in NumPy, one-hot labels, plain model.fit, batch 56, RMSprop."""
import keras
import numpy as np
from keras import layers


def build_notebook_model():
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D(2, 2),
        layers.Dropout(0.5),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D(2, 2),
        layers.Dropout(0.5),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])


def normalise(x):
    return (x.reshape((x.shape[0], 28, 28, 1)).astype("float32")) / 255.0


def train_notebook(splits, epochs, seed, callbacks=()):
    """Return (model, history) trained the notebook's way."""
    keras.utils.set_random_seed(seed)
    model = build_notebook_model()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["acc"])
    history = model.fit(normalise(splits["x_train"]), keras.utils.to_categorical(splits["y_train"], 10),
                        epochs=epochs, batch_size=56, verbose=0, callbacks=list(callbacks),
                        validation_data=(normalise(splits["x_val"]), keras.utils.to_categorical(splits["y_val"], 10)))
    return model, history


def notebook_test_accuracy(model, splits):
    proba = model.predict(normalise(splits["x_test"]), batch_size=1024, verbose=0)
    return float(np.mean(proba.argmax(axis=1) == splits["y_test"]))
