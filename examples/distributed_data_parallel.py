"""Data-parallel training of a CNN holding `keras_jax_pool.MaxPool2D`, with
`keras.distribution.DataParallel` over every JAX device, checked against the
same training on one device.

    python examples/distributed_data_parallel.py [--epochs 3] [--batch-size 64]

Each batch is split over the devices; every device holds a copy of the
weights, and the gradients are summed across devices in each step. On a
machine without accelerators the script asks XLA for 4 CPU devices, so it
runs anywhere. Needs JAX and scikit-learn (for its bundled digits).
"""

import argparse
import os

# Both before Keras and JAX are imported: Keras fixes its backend at import,
# and XLA fixes the number of CPU devices when it starts.
os.environ["KERAS_BACKEND"] = "jax"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_jax_pool import MaxPool2D  # noqa: E402
from keras_jax_pool.demo import load_digits  # noqa: E402


def build_cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            MaxPool2D(pool_size=3, strides=2, padding="same"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            MaxPool2D(pool_size=2),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


def train(initial_weights, data, epochs, batch_size):
    """Builds, compiles and fits the CNN in the distribution scope in force."""
    (x_train, y_train), (x_test, y_test) = data
    model = build_cnn()
    model.set_weights(initial_weights)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=batch_size, verbose=0)
    return model.predict(x_test, batch_size=batch_size, verbose=0), accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch, split over the devices")
    args = parser.parse_args(argv)

    devices = keras.distribution.list_devices()
    # Every batch, the last included, must split evenly over the devices.
    if args.batch_size % len(devices):
        parser.error(f"--batch-size {args.batch_size} does not split over {len(devices)} devices")
    (x_train, y_train), (x_test, y_test) = load_digits()
    train_size, test_size = (len(x) // args.batch_size * args.batch_size for x in (x_train, x_test))
    data = (x_train[:train_size], y_train[:train_size]), (x_test[:test_size], y_test[:test_size])

    keras.utils.set_random_seed(0)
    initial_weights = build_cnn().get_weights()
    one_device, one_accuracy = train(initial_weights, data, args.epochs, args.batch_size)

    distribution = keras.distribution.DataParallel(devices=devices)
    with distribution.scope():
        parallel, parallel_accuracy = train(initial_weights, data, args.epochs, args.batch_size)

    # Gradients are summed in another order across devices: equal up to float rounding.
    same = np.allclose(parallel, one_device, rtol=1e-4, atol=1e-4)
    print(f"data parallel on {len(devices)} devices ({devices[0].split(':')[0]}), global batch {args.batch_size}")
    print(f"test accuracy: one device {one_accuracy:.3f}, data parallel {parallel_accuracy:.3f}")
    print(f"largest difference of logits: {np.max(np.abs(parallel - one_device)):.2e}")
    print("same predictions as one device" if same else "DIFFERENT predictions from one device")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
