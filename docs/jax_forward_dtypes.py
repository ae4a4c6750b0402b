"""The JAX forward alone, per dtype: stock's `reduce_window` against the
forward `backends/jax.py` chooses and against the elements' max, on the
overlapping and tiling cases of the README's "Forward, chosen per geometry
and dtype" table. Outputs are checked against stock's (NaN planted, and
-0.0 among the zeros of a ReLU) before timing; ms, median of R repeats in
turn.

    KERAS_BACKEND=jax python docs/jax_forward_dtypes.py    # R=7 by default
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
import jax
import numpy as np

from keras_jax_pool import bench
from keras_jax_pool.backends import jax as kj

CASES = [
    ((32, 112, 112, 64), (3, 3), (2, 2), "same"),
    ((8, 56, 56, 256), (3, 3), (2, 2), "same"),
    ((32, 56, 56, 64), (3, 3), (1, 1), "same"),
    ((32, 8192, 64), (3,), (2,), "same"),
    ((4, 32, 64, 64, 32), (3, 3, 3), (2, 2, 2), "same"),
    ((32, 112, 112, 64), (2, 2), (2, 2), "valid"),
    ((8, 56, 56, 256), (2, 2), (2, 2), "valid"),
    ((32, 8192, 64), (2,), (2,), "valid"),
    ((4, 32, 64, 64, 32), (2, 2, 2), (2, 2, 2), "valid"),
    ((32, 28, 28, 3), (2, 2), (2, 2), "valid"),
]
FORMS = {"stock": kj._reduce_window_max, "ours": kj._forward, "elements' max": kj._max_of_widened_elements}
R = int(os.environ.get("R", "7"))


def main():
    print(f"{'case':<48} {'dtype':<9} " + " ".join(f"{n:>14}" for n in FORMS) + "  stock/ours")
    for dtype in ("float32", "bfloat16", "float16"):
        for shape, pool, strides, padding in CASES:
            rng = np.random.default_rng(0)
            x = np.maximum(rng.standard_normal(shape), 0).astype(bench.numpy_dtype(dtype))
            flat = x.reshape(-1)
            flat[::1000003], flat[7::991] = np.nan, -0.0
            geo = kj._Geometry.of(x.shape, pool, strides, padding, "channels_last")
            x = jax.device_put(x)  # timed without the copy from numpy
            fns, outputs = {}, {}
            for name, form in FORMS.items():
                f = jax.jit(lambda v, form=form: form(v, geo))
                outputs[name] = np.asarray(f(x)).astype("float32")
                fns[name] = lambda f=f: f(x).block_until_ready()
            if not (kj._tiles_input(geo) and dtype == "float32"):  # there stock drops NaN
                for name in FORMS:
                    assert np.array_equal(outputs[name], outputs["stock"], equal_nan=True), (name, shape, dtype)
            ms = bench.interleaved_median_ms(fns, R)
            label = f"{'x'.join(map(str, shape))} pool {'x'.join(map(str, pool))} stride {strides[0]} {padding}"
            cells = " ".join(f"{ms[n]:14.2f}" for n in FORMS)
            print(f"{label:<48} {dtype:<9} {cells}  {ms['stock'] / ms['ours']:10.2f}", flush=True)


if __name__ == "__main__":
    main()
