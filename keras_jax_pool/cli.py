"""Command line: `python -m keras_jax_pool <command>` or `keras-jax-pool <command>`."""

import argparse
import sys


def _demo(args):
    from keras_jax_pool import demo

    demo.run(output=args.output, epochs=args.epochs)


def _ints(text):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, received {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, received {text!r}")
    return values


def _names(kind, choices):
    """An argparse type: a comma-separated list of names out of
    `choices()` = (every name, the names `all` stands for)."""

    def parse(text):
        names, every = choices()
        values = tuple(dict.fromkeys(v.strip() for v in text.split(",")))
        if values == ("all",):
            return every
        for value in values:
            if value not in names:
                raise argparse.ArgumentTypeError(
                    f"unknown {kind} {value!r} (received {text!r}); choose from {', '.join(names)}, or all"
                )
        return values

    return parse


def _kinds():
    from keras_jax_pool import bench

    names = bench.KINDS + tuple(k.lower() for k in bench.KINDS)
    return names, bench.KINDS


def _dtypes():
    from keras_jax_pool import bench

    return bench.DTYPES, bench.DTYPES


def _models():
    from keras_jax_pool import bench_models

    return tuple(bench_models.MODELS), bench_models.DEFAULT_MODELS


def _policies():
    from keras_jax_pool import bench_models

    return bench_models.POLICIES, bench_models.POLICIES


def _positive(text):
    values = _ints(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one positive integer, received {text!r}")
    return values[0]


def _bench(args):
    op_options = {"--quick": args.quick, "--shape": args.shape, "--pool": args.pool, "--stride": args.stride}
    op_options.update({"--padding": args.padding, "--dtype": args.dtype, "--kind": args.kind})
    if args.models is not None:
        _bench_models(args, [flag for flag, value in op_options.items() if value])
        return
    if args.policy:
        raise SystemExit("bench: --policy applies to --models only; the op bench takes --dtype")
    from keras_jax_pool import bench

    if args.shape:
        if args.kind:
            raise SystemExit("bench: --kind picks among the default cases; --shape gives one case of its own")
        cases = (_one_case(bench, args),)
    else:
        for flag in ("pool", "stride", "padding"):
            if getattr(args, flag):
                raise SystemExit(f"bench: --{flag} applies with --shape only")
        cases = bench.QUICK_CASES if args.quick else bench.DEFAULT_CASES
        if args.kind:
            cases = bench.of_kinds(args.kind, cases)
    dtypes = args.dtype or bench.DEFAULT_DTYPES
    bench.run(cases, dtypes=dtypes, **_outputs(args))


def _one_case(bench, args):
    """The case `--shape` (batch, 1 to 3 spatial sizes, channels) gives,
    with `--pool` and `--stride` of one int per spatial axis (or one int
    for all of them)."""
    shape = args.shape
    dims = len(shape) - 2
    if dims not in (1, 2, 3):
        raise SystemExit(
            "bench: --shape takes batch, 1 to 3 spatial sizes and channels (e.g. 32,112,112,64); "
            f"received {','.join(map(str, shape))}"
        )

    def per_axis(flag, values, default):
        if values is None:
            return default
        if len(values) == 1:
            return values * dims
        if len(values) != dims:
            raise SystemExit(
                f"bench: --{flag} takes 1 or {dims} integers for a --shape with {dims} spatial axes; "
                f"received {','.join(map(str, values))}"
            )
        return values

    pool = per_axis("pool", args.pool, (2,) * dims)
    return bench.Case(shape, pool, per_axis("stride", args.stride, pool), args.padding or "valid")


def _bench_models(args, op_flags):
    if op_flags:
        raise SystemExit(
            f"bench --models: {', '.join(op_flags)} applies to the op bench only; "
            f"--models takes --policy for dtype policies"
        )
    from keras_jax_pool import bench_models

    policies = args.policy or bench_models.DEFAULT_POLICIES
    bench_models.run(args.models, policies, **_outputs(args))


def _outputs(args):
    """The options both benches take; repeats only where given, else each bench's own default."""
    options = {"json_path": args.json, "plot_path": args.plot}
    return {**options, "repeats": args.repeats} if args.repeats else options


def _swap(args):
    from keras_jax_pool import surgery

    try:
        surgery.swap_file(args.input, args.output, args.direction, check=args.check)
    except (OSError, ValueError) as error:
        sys.exit(f"keras-jax-pool swap-{args.direction}: error: {error}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-jax-pool",
        description="Drop-in MaxPool1D, MaxPool2D and MaxPool3D for Keras 3. The backend is KERAS_BACKEND's (default jax).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    demo = commands.add_parser("demo", help="train a small CNN on scikit-learn's digits with stock and with our layer")
    demo.add_argument("--output", default="demo_out/digits_cnn.keras", help="where to save the trained model")
    demo.add_argument("--epochs", type=int, default=5)
    demo.set_defaults(run=_demo)

    for direction, help_text in (
        ("in", "replace every keras.layers.MaxPooling1D/2D/3D in a .keras file by keras_jax_pool.MaxPool1D/2D/3D"),
        ("out", "replace every keras_jax_pool.MaxPool1D/2D/3D in a .keras file by keras.layers.MaxPooling1D/2D/3D"),
    ):
        swap = commands.add_parser(f"swap-{direction}", help=help_text)
        swap.add_argument("input", metavar="IN.keras", help="the model to read (loaded in safe mode, never overwritten)")
        swap.add_argument("output", metavar="OUT.keras", help="where to write the new model (atomically)")
        swap.add_argument("--check", action="store_true", help="write only if old and new model give equal outputs on random input")
        swap.set_defaults(run=_swap, direction=direction)

    bench = commands.add_parser(
        "bench",
        help="time our layer against stock: the op forward and forward+backward, or whole models (--models)",
    )
    bench.add_argument("--quick", action="store_true", help="small shapes, for a smoke run")
    bench.add_argument(
        "--shape",
        type=_ints,
        help="one case instead of the defaults, channels_last: batch, 1 to 3 spatial sizes, channels "
        "(32,8192,64 pools sequences, 32,112,112,64 images, 4,32,64,64,32 volumes)",
    )
    bench.add_argument("--pool", type=_ints, help="with --shape: one int per spatial axis, or one for all (default 2)")
    bench.add_argument("--stride", type=_ints, help="with --shape: one int per spatial axis, or one for all (default: the pool size)")
    bench.add_argument("--padding", choices=["valid", "same"], help="with --shape (default valid)")
    bench.add_argument(
        "--kind",
        type=_names("kind", _kinds),
        help="the default (or --quick) cases of these layers alone: comma-separated 1D, 2D, 3D, or all",
    )
    bench.add_argument(
        "--dtype",
        type=_names("dtype", _dtypes),
        help="comma-separated dtypes of the op bench (float32, bfloat16, float16) or all; default float32,bfloat16",
    )
    bench.add_argument(
        "--models",
        nargs="?",
        const="all",
        type=_names("model", _models),
        help="time fit and predict steps of whole models, stock against swap_in: comma-separated "
        "(cifar, conv1d, conv3d, vgg16, resnet50, tiny) or all (all but tiny; the default)",
    )
    bench.add_argument(
        "--policy",
        type=_names("policy", _policies),
        help="with --models: comma-separated dtype policies (float32, mixed_bfloat16, mixed_float16) "
        "or all; default float32,mixed_bfloat16",
    )
    bench.add_argument(
        "--repeats", type=_positive, help="timed runs per measurement, median reported (default 9; 3 with --models)"
    )
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--plot", metavar="FILE.png", help="also draw a bar chart (needs matplotlib)")
    bench.set_defaults(run=_bench)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
