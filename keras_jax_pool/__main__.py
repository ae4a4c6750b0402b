import sys

from keras_jax_pool.cli import main

sys.exit(main())
