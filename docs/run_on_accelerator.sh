#!/usr/bin/env bash
# The measurements behind the README's "On a GPU" section, in one run on a
# machine with a GPU and JAX built for it (Keras 3.15.1 installed beside it):
#
#   bash docs/run_on_accelerator.sh OUT_DIR [formulations|bench|tests|models ...]
#
# Each step has its own time limit and writes its JSON and log into OUT_DIR as
# it goes, so a step cut off still leaves what the others measured.
set -u
out=${1:?usage: run_on_accelerator.sh OUT_DIR [steps]}
shift
steps=${*:-formulations bench tests models}  # MODELS=cifar,vgg16,... picks the models
mkdir -p "$out"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
# pytest runs several processes on the one GPU: none may take all its memory.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

step() {  # step NAME SECONDS COMMAND...: run it, log it, say how it ended
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - start)) s (limit $limit s)"
    tail -n 40 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
for s in $steps; do
    case $s in
    formulations) step formulations 120 python3 docs/accelerator_formulations.py --dtypes float32,bfloat16 --repeats 5 --json "$out/formulations_gpu.json" ;;
    bench) step bench 100 python3 -m keras_jax_pool bench --dtype float32,bfloat16 --repeats 7 --json "$out/bench_jax_gpu.json" ;;
    tests) step tests 110 python3 -m pytest -q -p no:cacheprovider -n 8 -rfE tests/test_matches_stock.py tests/test_gradients.py tests/test_nan.py tests/test_family.py ;;
    models) step models 80 python3 -m keras_jax_pool bench --models "${MODELS:-cifar,conv1d,conv3d}" --policy float32,mixed_bfloat16 --json "$out/bench_models_jax_gpu.json" ;;
    *) echo "unknown step $s" ;;
    esac
done
