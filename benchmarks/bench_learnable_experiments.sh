#!/usr/bin/env bash
# The experiment benchmarks of benchmarks/results/learnable.md (Wolter et al. 2020), in order.
# Usage: benchmarks/bench_learnable_experiments.sh OUT_DIR [GROUP...]
#   groups: mnist_wavelet mnist_fastfood mnist_dense adding_wavelet adding_gru copy_wavelet copy_gru
# Each run writes OUT_DIR/<group>/<run folder>/report.json (params, test_accuracy, timings).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: $0 OUT_DIR [GROUP...]}
shift
GROUPS_TO_RUN=${*:-mnist_wavelet mnist_fastfood mnist_dense adding_wavelet adding_gru copy_wavelet copy_gru}
PY=${PYTHON:-.venv/bin/python}
APP=apps/learnable_wavelet.py
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# One thread per run, so that two runs can share a 2-core machine side by side.
export TF_NUM_INTRAOP_THREADS=${TF_NUM_INTRAOP_THREADS:-1} TF_NUM_INTEROP_THREADS=${TF_NUM_INTEROP_THREADS:-1}
# Sequence tasks on a CPU budget: fewer steps than the paper (see learnable.md). RMSprop lr 1e-3
# with gradient-norm clipping 1 (the app's defaults for these tasks).
SEQ="--seq_len 150 --batch_size 50 --optimizer ${SEQ_OPTIMIZER:-rmsprop} --lr ${SEQ_LR:-1e-3} --clipnorm 1.0 --n_val 500 --n_test 2000 --seed 0"
for g in $GROUPS_TO_RUN; do
  case $g in
    mnist_wavelet)  $PY $APP --flagfile configs/learnable_mnist_wavelet.cfg  --save_dir "$OUT/$g" ;;
    mnist_fastfood) $PY $APP --flagfile configs/learnable_mnist_fastfood.cfg --save_dir "$OUT/$g" ;;
    mnist_dense)    $PY $APP --flagfile configs/learnable_mnist_dense.cfg    --save_dir "$OUT/$g" ;;
    adding_wavelet) $PY $APP --experiment adding --rnn wavelet --hidden 512 --compress state,reset,update \
                      $SEQ --epochs ${ADD_EPOCHS:-16} --steps_per_epoch ${ADD_STEPS:-250} --save_dir "$OUT/$g" ;;
    adding_gru)     $PY $APP --experiment adding --rnn gru --hidden 512 \
                      $SEQ --epochs ${ADD_EPOCHS:-16} --steps_per_epoch ${ADD_STEPS:-250} --save_dir "$OUT/$g" ;;
    copy_wavelet)   $PY $APP --experiment copy --rnn wavelet --hidden 512 --compress state,reset \
                      $SEQ --epochs ${COPY_EPOCHS:-5} --steps_per_epoch ${COPY_STEPS:-100} --save_dir "$OUT/$g" ;;
    copy_gru)       $PY $APP --experiment copy --rnn gru --hidden 512 \
                      $SEQ --epochs ${COPY_EPOCHS:-5} --steps_per_epoch ${COPY_STEPS:-100} --save_dir "$OUT/$g" ;;
    *) echo "unknown group $g" >&2; exit 2 ;;
  esac
done
