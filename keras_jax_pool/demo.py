"""The main job: a small CNN on scikit-learn's handwritten digits, trained
once with stock `keras.layers.MaxPooling2D` and once with `MaxPool2D`."""

import time

import keras
import numpy as np

from keras_jax_pool import files
from keras_jax_pool.layers import MaxPool2D


def load_digits(seed=0):
    """The 8x8 digits that ship inside scikit-learn (no download), scaled to
    [0, 1] and split 80/20."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    x = (data.images[..., None] / 16.0).astype("float32")
    y = data.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return (x[:split], y[:split]), (x[split:], y[split:])


def build_cnn(pool_class):
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            pool_class(pool_size=2, name="pool1"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            pool_class(pool_size=2, name="pool2"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ],
        name="digits_cnn",
    )


class _StepTimer(keras.callbacks.Callback):
    """Wall time of each training step after the first epoch (which compiles)."""

    def __init__(self):
        super().__init__()
        self.times, self._epoch = [], 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch > 0:
            self.times.append(time.perf_counter() - self._start)


def train(pool_class, data, initial_weights, epochs, batch_size):
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(0)
    model = build_cnn(pool_class)
    model.set_weights(initial_weights)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    timer = _StepTimer()
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0, callbacks=[timer])
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return model, accuracy, 1e3 * float(np.median(timer.times))


def run(output="demo_out/digits_cnn.keras", epochs=5, batch_size=32):
    backend = keras.backend.backend()
    print(f"keras {keras.__version__}, backend {backend}")
    if backend == "numpy":
        raise SystemExit("The numpy backend cannot train (Keras has no fit() there); use jax, tensorflow or torch.")
    data = load_digits()
    print(f"digits: {len(data[0][0])} train / {len(data[1][0])} test images of 8x8")
    keras.utils.set_random_seed(0)
    initial_weights = build_cnn(keras.layers.MaxPooling2D).get_weights()

    results = {}
    for label, pool_class in (("stock MaxPooling2D", keras.layers.MaxPooling2D), ("keras_jax_pool.MaxPool2D", MaxPool2D)):
        print(f"training with {label} ({epochs} epochs)...", flush=True)
        results[label] = train(pool_class, data, initial_weights, epochs, batch_size)

    print(f"\n{'layer':<26} {'test accuracy':>13} {'median step ms':>15}")
    for label, (_, accuracy, step_ms) in results.items():
        print(f"{label:<26} {accuracy:>13.4f} {step_ms:>15.2f}")

    model = results["keras_jax_pool.MaxPool2D"][0]
    files.save_model(model, output)
    reloaded = keras.saving.load_model(output)
    x_test = data[1][0]
    same = np.array_equal(
        keras.ops.convert_to_numpy(model.predict(x_test, verbose=0)),
        keras.ops.convert_to_numpy(reloaded.predict(x_test, verbose=0)),
    )
    print(f"\nsaved {output}; reloaded model gives {'equal' if same else 'DIFFERENT'} predictions")
    if not same:
        raise SystemExit(1)
