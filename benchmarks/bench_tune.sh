#!/usr/bin/env bash
# A real (small) compression search on MNIST with apps/tune.py, timed; results in $OUT_DIR.
# Usage: bash benchmarks/bench_tune.sh [OUT_DIR]
set -euo pipefail
OUT_DIR=${1:-/tmp/dwt_bench_tune}
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(lscpu | grep 'Model name' | sed 's/ \+/ /g')"
start=$(date +%s)
python apps/tune.py --tuner random --max_trials 8 --epochs 2 --retrain_epochs 1 \
  --dataset mnist --model lenet300 --max_train_samples 20000 \
  --objective constrained --min_compression_ratio 50 \
  --bases identity,dct,haar,db4 --quantizers none,kmeans --seed 0 --save_dir "$OUT_DIR"
echo "wall_s: $(( $(date +%s) - start ))"
