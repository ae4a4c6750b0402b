"""Keras's conventions for layers, as the stock layer follows them: a layer
is built when made, unless its class overrides `build()`, which then runs on
the first input; a layer made without a name gets the stock layer's. Each
test observes ours and stock `MaxPooling2D` alike and compares."""

import keras
import pytest

import keras_jax_pool as kjp
from tests.conftest import to_numpy

SHAPE = (2, 6, 6, 3)


def _subclass_with_build(base):
    """A user's subclass of `base` whose `build()` makes a weight (a scale)
    and records the shapes it was built with."""

    class ScaledPool(base):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.build_shapes = []

        def build(self, input_shape):
            self.build_shapes.append(tuple(input_shape))
            self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

        def call(self, inputs):
            return super().call(inputs) * self.scale

    return ScaledPool


def _first_input_eager(layer, x):
    return [layer(x), layer(x)]


def _first_input_symbolic(layer, x):
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    return [model(x), layer(x)]


def test_plain_layer_is_built_when_made():
    assert kjp.MaxPool2D().built == keras.layers.MaxPooling2D().built


def test_plain_layer_state_is_locked_when_made():
    # Being built, a layer takes no new variables (Keras locks its state).
    def refuses_weights(layer):
        try:
            layer.add_weight(shape=(), name="extra")
        except ValueError:
            return True
        return False

    assert refuses_weights(kjp.MaxPool2D()) == refuses_weights(keras.layers.MaxPooling2D())


def test_subclass_overriding_build_is_not_built_when_made():
    ours = _subclass_with_build(kjp.MaxPool2D)()
    stock = _subclass_with_build(keras.layers.MaxPooling2D)()
    assert (ours.built, ours.build_shapes) == (stock.built, stock.build_shapes)


@pytest.mark.parametrize("first_input", [_first_input_eager, _first_input_symbolic])
def test_subclass_build_runs_once_on_first_input(first_input, rng):
    x = rng.normal(size=SHAPE).astype("float32")
    observed = {}
    for base in (kjp.MaxPool2D, keras.layers.MaxPooling2D):
        layer = _subclass_with_build(base)()
        outputs = first_input(layer, x)
        observed[base] = (
            layer.built,
            layer.build_shapes,
            [(w.name, tuple(w.shape)) for w in layer.trainable_weights],
            [to_numpy(y).tolist() for y in outputs],
        )
    assert observed[kjp.MaxPool2D] == observed[keras.layers.MaxPooling2D]
    assert observed[kjp.MaxPool2D][1], "build() never ran"


def _default_names(classes):
    keras.backend.clear_session()  # restarts the name counters
    return [cls().name for cls in classes]


def test_default_names_are_stock_names_from_stock_counter():
    ours, stock = kjp.MaxPool2D, keras.layers.MaxPooling2D
    assert _default_names([stock, ours, ours, stock]) == _default_names([stock] * 4)


def test_subclass_default_name_is_its_own_class_name():
    ours = _subclass_with_build(kjp.MaxPool2D)
    stock = _subclass_with_build(keras.layers.MaxPooling2D)
    assert _default_names([ours, ours]) == _default_names([stock, stock])
