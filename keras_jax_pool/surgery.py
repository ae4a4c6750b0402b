"""Model surgery: put this package's layers into an existing model in place
of `keras.layers.MaxPooling1D`, `MaxPooling2D` and `MaxPooling3D`
(`swap_in`), and take them out again (`swap_out`).

The model is rebuilt from configs with `keras.models.clone_model`, one
nested Sequential or Functional model at a time, and then given the
original's variables, trainable flags and optimizer state. Only layers of
exactly the class being replaced change (a subclass may change behaviour, so
it is left alone); each is made with `from_config` of the old layer's config,
so name, arguments and dtype policy carry over. A layer called in several
places, or shared by several nested models, is rebuilt once and stays shared.
"""

import os
from pathlib import Path

import keras
import numpy as np

# Functional is not exported by Keras, but clone_model rebuilds only
# Sequential and Functional models, so this is the test for "rebuildable".
from keras.src.models.functional import Functional

from keras_jax_pool import files, layers

# Each direction's replacements: old class -> new class, one per kind.
REPLACEMENTS = {
    "in": dict((stock, ours) for ours, stock in layers.STOCK.items()),
    "out": dict(layers.STOCK),
}
PUBLIC_NAMES = {
    **{stock: f"keras.layers.{stock.__name__}" for stock in layers.STOCK.values()},
    **{ours: f"keras_jax_pool.{ours.__name__}" for ours in layers.STOCK},
}


def swap_in(model):
    """A copy of `model` with every `keras.layers.MaxPooling1D`,
    `MaxPooling2D` and `MaxPooling3D` replaced by `keras_jax_pool.MaxPool1D`,
    `MaxPool2D` and `MaxPool3D` of the same config and name.

    Works at any depth of nested Sequential and Functional models. All other
    layers are rebuilt from their configs; variables, trainable flags, the
    input and output structure and, for a compiled model, the compile config
    (optimizer, loss, metrics) and optimizer state are carried over, so the
    copy computes the same outputs and trains on from the same state. `model`
    itself is not changed.

    Args:
        model: a `keras.Sequential` or Functional `keras.Model`.

    Returns:
        The new model, of the same class as `model`.

    Raises:
        ValueError: for a subclassed model, or a stock pooling layer held
            inside a custom layer, which cannot be rebuilt from configs; the
            message says which and what to do instead.

    Example:
    >>> stock = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.MaxPooling2D()])
    >>> type(keras_jax_pool.swap_in(stock).layers[0]).__name__
    'MaxPool2D'
    """
    return _swap(model, REPLACEMENTS["in"])


def swap_out(model):
    """The reverse of `swap_in`: a copy of `model` with every
    `keras_jax_pool.MaxPool1D`, `MaxPool2D` and `MaxPool3D` replaced by the
    stock layer of its kind, so that its `.keras` file loads where this
    package is not installed.

    Same arguments, guarantees and errors as `swap_in`.
    """
    return _swap(model, REPLACEMENTS["out"])


def find_layers(model, layer_classes):
    """The distinct layers of exactly `layer_classes` (a class, or a
    collection of them) at any depth of `model`, in the order Keras tracks
    them."""
    classes = {layer_classes} if isinstance(layer_classes, type) else set(layer_classes)
    return [layer for layer in model._flatten_layers(include_self=False) if type(layer) in classes]


def swap_file(input_path, output_path, direction, check=False, log=print):
    """Swaps (`direction` "in" or "out") the model in the `.keras` file
    `input_path` and writes the result to `output_path`, atomically.

    The input is loaded in safe mode and never overwritten. With `check`, the
    old and the new model are run on the same random input first, and
    nothing is written unless their outputs are equal. Reports through `log`
    how many layers of each kind were replaced; returns their total.

    Raises:
        FileNotFoundError: `input_path` does not exist.
        ValueError: a bad path or direction (named, with the value), a file
            that is not a loadable `.keras` archive, a model that cannot be
            rebuilt, or a failed check.
    """
    if direction not in ("in", "out"):
        raise ValueError(f'`direction` must be "in" or "out". Received: direction={direction!r}')
    replacements = REPLACEMENTS[direction]
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.suffix != ".keras":
        raise ValueError(f"The output must be a .keras file. Received: output={str(output_path)!r}")
    if output_path.resolve() == input_path.resolve() or (
        output_path.exists() and input_path.exists() and os.path.samefile(output_path, input_path)
    ):
        raise ValueError(
            f"Refusing to overwrite the input {str(input_path)!r} with the output "
            f"{str(output_path)!r}: give the output another path."
        )
    model = files.load_model(input_path)
    replaced = {old: [layer.name for layer in find_layers(model, old)] for old in replacements}
    new_model = _swap(model, replacements)
    for old, new in replacements.items():
        names = replaced[old]
        log(f"replaced {len(names)} {PUBLIC_NAMES[old]} layer(s) with {PUBLIC_NAMES[new]}: {', '.join(names) or '-'}")
    if check:
        difference = max_output_difference(model, new_model)
        if difference != 0:
            raise ValueError(
                f"Check failed: on random input the swapped model's outputs differ "
                f"from those of {str(input_path)!r} by up to {difference}; "
                f"{str(output_path)!r} was not written."
            )
        log("check: outputs of the old and the new model are equal on random input")
    files.save_model(new_model, output_path)
    log(f"wrote {output_path}")
    return sum(map(len, replaced.values()))


def max_output_difference(model_a, model_b, batch_size=2, seed=0):
    """The largest absolute difference between the outputs of two models of
    the same inputs, run (not training) on one random input batch: normal
    floats, or integers in [0, 10). Unknown dimensions other than the batch
    are taken as 32. Equal values (NaN and NaN included) differ by 0; outputs
    of different shapes, or NaN against a number, by `inf`."""
    rng = np.random.default_rng(seed)

    def random_input(spec):
        shape = (batch_size, *(32 if n is None else n for n in spec.shape[1:]))
        if "int" in spec.dtype:
            return rng.integers(0, 10, size=shape).astype(spec.dtype)
        if spec.dtype == "bool":
            return rng.random(size=shape) < 0.5
        return rng.normal(size=shape).astype(spec.dtype)

    # A Sequential model rebuilt from a file has `inputs` but no `input`.
    input_structure = model_a.input if isinstance(model_a, Functional) else model_a.inputs[0]
    inputs = keras.tree.map_structure(random_input, input_structure)
    outputs_a = keras.tree.flatten(model_a(inputs, training=False))
    outputs_b = keras.tree.flatten(model_b(inputs, training=False))
    difference = 0.0
    for a, b in zip(outputs_a, outputs_b, strict=True):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        if a.shape != b.shape:
            return float("inf")
        a, b = a.astype("float64"), b.astype("float64")
        gaps = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a - b))
        difference = max(difference, float(np.nan_to_num(gaps, nan=np.inf).max(initial=0.0)))
    return difference


def _swap(model, replacements):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected a keras.Model (Sequential or Functional). "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    _check_rebuildable(model, replacements)
    pairs = []  # (original, rebuilt) for every layer rebuilt, models included
    new_model = _rebuild(model, replacements, cache={}, pairs=pairs)
    for old, new in pairs:
        if not isinstance(old, keras.Model):  # a model's variables are its layers'
            _copy_variables(old.variables, new.variables, f"layer {old.name!r}")
    _copy_trainable(model, new_model)
    if model.compiled:
        # Compile again now that the trainable flags are final: the optimizer
        # must see the same trainable variables as the original's did.
        new_model.compile_from_config(model.get_compile_config())
        if model.optimizer.built:
            _copy_variables(model.optimizer.variables, new_model.optimizer.variables, "the optimizer")
    return new_model


def _rebuild(model, replacements, cache, pairs):
    def clone_layer(layer):
        if id(layer) in cache:
            return cache[id(layer)]
        if isinstance(layer, keras.Model):
            new = _rebuild(layer, replacements, cache, pairs)
        elif type(layer) in replacements:
            new = replacements[type(layer)].from_config(layer.get_config())
        else:
            new = layer.__class__.from_config(layer.get_config())
        cache[id(layer)] = new
        pairs.append((layer, new))
        return new

    input_tensors = None
    if isinstance(model, Functional):
        # clone_model would name new inputs after their tensors, not layers.
        input_layers = {id(layer.output): layer for layer in model.layers if isinstance(layer, keras.layers.InputLayer)}
        input_tensors = keras.tree.map_structure(
            lambda x: keras.layers.InputLayer.from_config(input_layers[id(x)].get_config()).output,
            model.input,
        )
    new_model = keras.models.clone_model(model, input_tensors=input_tensors, clone_function=clone_layer)
    if type(new_model) is not type(model):
        raise ValueError(
            f"Model {model.name!r} of class {type(model).__name__} cannot be "
            f"rebuilt from its config (keras.models.clone_model gives a "
            f"{type(new_model).__name__}). Give the class an `__init__(self, "
            f"inputs, outputs, name=None, **kwargs)`, or swap in a plain "
            f"Functional model built from the same layers."
        )
    return new_model


def _check_rebuildable(model, replacements, path=()):
    """Raises the errors documented in `swap_in` before anything is built."""
    path = (*path, model.name)
    if not isinstance(model, (keras.Sequential, Functional)):
        held = list(dict.fromkeys(type(h) for h in find_layers(model, replacements))) or list(replacements)
        raise ValueError(
            f"Cannot rebuild the subclassed model {'/'.join(path)!r} (class "
            f"{type(model).__name__}): its layers are made by its own code, "
            f"not from a config. Make its pooling layers with "
            f"{_names(replacements[k] for k in held)} in its `__init__` instead: "
            f"the arguments are the same."
        )
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _check_rebuildable(layer, replacements, path)
            continue
        hidden = find_layers(layer, replacements)
        if hidden:
            kinds = list(dict.fromkeys(type(h) for h in hidden))
            raise ValueError(
                f"Layer {'/'.join((*path, layer.name))!r} (class "
                f"{type(layer).__name__}) holds {_names(kinds)} layer(s) "
                f"{[h.name for h in hidden]} that cannot be replaced from "
                f"outside. Make them with {_names(replacements[k] for k in kinds)} "
                f"in that class's code instead: the arguments are the same."
            )


def _names(classes):
    """`keras_jax_pool.MaxPool1D`/`keras_jax_pool.MaxPool2D`, ... for messages."""
    return "/".join(f"`{PUBLIC_NAMES[c]}`" for c in classes)


def _copy_variables(sources, targets, owner):
    if [tuple(v.shape) for v in sources] != [tuple(v.shape) for v in targets]:
        raise ValueError(
            f"The rebuilt copy of {owner} has variables of shapes "
            f"{[tuple(v.shape) for v in targets]}, the original "
            f"{[tuple(v.shape) for v in sources]}; its get_config() does not "
            f"describe it fully."
        )
    for source, target in zip(sources, targets):
        # A copy, not the same buffer: JAX's fit donates (frees) the buffers of
        # the model it trains, which would leave the other model's deleted.
        target.assign(keras.ops.convert_to_numpy(source))


def _copy_trainable(old, new):
    """Copies trainable flags top-down: setting a layer's flag resets those
    of its sublayers, which are then set to their own values."""
    if new.trainable != old.trainable:
        new.trainable = old.trainable
    old_children = old._flatten_layers(include_self=False, recursive=False)
    new_children = new._flatten_layers(include_self=False, recursive=False)
    for old_child, new_child in zip(old_children, new_children, strict=True):
        _copy_trainable(old_child, new_child)
