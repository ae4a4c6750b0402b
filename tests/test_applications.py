"""`swap_in` on `keras.applications` models (random weights: nothing can be
downloaded here; without the classifier top, which holds no pooling): every
stock `MaxPooling2D` becomes ours and the outputs stay equal."""

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import surgery
from tests.conftest import to_numpy

# (constructor, smallest convenient input size, stock MaxPooling2D layers in
# it): one model per pooling geometry the applications use. VGG19 pools as
# VGG16 does (2x2 stride 2), and DenseNet121 as ResNet50 does (3x3 stride 2
# after ZeroPadding2D); they were dropped to keep `make test` under 20
# minutes (DenseNet121 alone took 28 s under JAX).
APPLICATIONS = [
    ("VGG16", 32, 5),  # 2x2 stride 2
    ("ResNet50", 32, 1),  # 3x3 stride 2, behind ZeroPadding2D
    ("Xception", 71, 4),  # 3x3 stride 2 "same"
    ("InceptionV3", 75, 4),  # 3x3 stride 2 "valid"
]


@pytest.mark.parametrize("name, size, pools", APPLICATIONS, ids=[a[0] for a in APPLICATIONS])
def test_swap_in_keeps_the_outputs_of_an_application_model(name, size, pools, rng):
    model = getattr(keras.applications, name)(weights=None, include_top=False, input_shape=(size, size, 3), pooling="avg")
    stock_names = [layer.name for layer in surgery.find_layers(model, keras.layers.MaxPooling2D)]
    assert len(stock_names) == pools
    swapped = kjp.swap_in(model)
    assert [layer.name for layer in surgery.find_layers(swapped, kjp.MaxPool2D)] == stock_names
    assert surgery.find_layers(swapped, keras.layers.MaxPooling2D) == []
    x = rng.normal(size=(2, size, size, 3)).astype("float32")
    np.testing.assert_array_equal(to_numpy(swapped(x)), to_numpy(model(x)))
    assert kjp.swap_out(swapped).get_config() == model.get_config()
