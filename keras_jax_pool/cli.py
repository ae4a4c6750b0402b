"""Command line: `python -m keras_jax_pool <command>` or `keras-jax-pool <command>`."""

import argparse
import sys


def _demo(args):
    from keras_jax_pool import demo

    demo.run(output=args.output, epochs=args.epochs)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-jax-pool",
        description="A drop-in MaxPool2D for Keras 3. The backend is KERAS_BACKEND's (default jax).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    demo = commands.add_parser("demo", help="train a small CNN on scikit-learn's digits with stock and with our layer")
    demo.add_argument("--output", default="demo_out/digits_cnn.keras", help="where to save the trained model")
    demo.add_argument("--epochs", type=int, default=5)
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
