"""One global switch: whether a window holding NaN must give NaN where stock
drops it.

By default (`keep_nan() is True`) every layer and op of this package gives
NaN for a window holding NaN, on every backend. Stock programs that drop NaN:

* JAX on CPU: XLA:CPU compiles a float32 CNN forward (convolutions,
  activations and `reduce_window`s whose windows tile their input) into one
  YNNPACK fusion whose max drops NaN. Our forward for such windows stays in
  that fusion and keeps NaN, as fast as stock's or faster in the models we
  bench, so here the switch gives stock's answers, not speed (README,
  "Keeping NaN, and what it costs").
* TensorFlow: every MaxPool kernel drops NaN, so keeping NaN costs an extra
  read of the input; and volumes are pooled as two 2D poolings (for LiteRT's
  builtins and the first-maximum gradient), where stock runs MaxPool3D.

`set_keep_nan(False)` makes the forward pass stock's own program there, for
serving where speed matters more than NaN: windows holding NaN may then give
what stock gives (the maximum of their other elements), and under TensorFlow
volumes pool with MaxPool3D where no gradient tape records (a predict step,
an export; a LiteRT file then needs the Flex delegate, as stock's does).
Gradients, dtypes and argument checks are unchanged (where a tape records,
volumes keep the two 2D poolings); torch and numpy keep NaN at no cost and
are not affected. The setting is read when a function is traced: call it before
building, compiling or exporting a model. A function traced earlier keeps the
setting it was traced with, and JAX reuses a Python function's trace across
`jax.jit` wrappers of it, so re-wrapping an already traced function does not
pick up a new setting (Keras traces each model's steps anew).

It is a global setting, never a layer argument, so `get_config()` stays the
stock layer's and `.keras` files are unchanged. The environment variable
`KERAS_JAX_POOL_KEEP_NAN=0` sets the initial value.
"""

import contextlib
import os

_FALSE = ("0", "false", "no", "off")
_keep_nan = os.environ.get("KERAS_JAX_POOL_KEEP_NAN", "1").strip().lower() not in _FALSE


def keep_nan():
    """Whether windows holding NaN give NaN on every backend (default True)."""
    return _keep_nan


def set_keep_nan(value):
    """Sets `keep_nan()`; `value` must be a bool."""
    global _keep_nan
    if not isinstance(value, bool):
        raise TypeError(f"`keep_nan` must be True or False. Received: keep_nan={value!r}")
    _keep_nan = value


@contextlib.contextmanager
def keeping_nan(value):
    """`set_keep_nan(value)` inside a `with` block, restored after it."""
    previous = keep_nan()
    set_keep_nan(value)
    try:
        yield
    finally:
        set_keep_nan(previous)
