"""Forward+backward throughput of WaveletDense and FastfoodDense against keras.layers.Dense.

For each width n, the three layers (n -> n, no bias) run one training-like step (forward, sum of
squares, gradients with respect to the input and all weights) inside a `tf.function`, on the
same batch, in the same process. The layers are timed round-robin (one block of `--steps` steps
each per round) so that load changes on a shared machine hit all of them alike; the report
gives medians over rounds and the ratio to Dense measured in the same round.

Usage:
  python benchmarks/bench_learnable_speed.py --widths 512 1024 4096 --batch 128 --rounds 7 \
      --jit both --threads 1

Writes `benchmarks/results/<--name>.json` through `_record.py` (command, commit, machine, load
before and after: a timing is a figure only when the file says `"quiet": true`).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _record import Recorder  # noqa: E402  (also puts the repository first on sys.path)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dwt_keras.learnable import FastfoodDense  # noqa: E402
from dwt_keras.learnable import WaveletDense  # noqa: E402


def make_step(layer, jit):
    @tf.function(jit_compile=jit)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x] + layer.trainable_variables)

    return step


def build_layers(n, levels, filter_length):
    layers = {
        "dense": keras.layers.Dense(n, use_bias=False),
        # The wavelet loss is weight-only and tiny; leave it out so that the timing is the
        # transform alone (it is included in the MNIST runs).
        "wavelet": WaveletDense(n, levels=levels, filter_length=filter_length, wavelet_loss_weight=0.0, seed=0),
        "fastfood": FastfoodDense(n, seed=0),
    }
    for layer in layers.values():
        layer.build((None, n))
    return layers


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 1024, 4096])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--levels", type=int, default=None, help="wavelet levels (default: deepest)")
    parser.add_argument("--filter_length", type=int, default=6)
    parser.add_argument("--jit", choices=("off", "on", "both"), default="both",
                        help="XLA-compile the steps (both: one table each, in the same run)")
    parser.add_argument("--threads", type=int, default=1,
                        help="TF intra/inter-op threads (1: the run adds about 1 to the load average "
                             "of these 2 cores, so that load after can show whether others ran)")
    parser.add_argument("--name", default="learnable_speed",
                        help="result file: benchmarks/results/<name>.json")
    args = parser.parse_args()
    from _timing import set_tf_threads

    set_tf_threads(args.threads)
    rec = Recorder(args.name)

    rng = np.random.default_rng(0)
    results = []
    for n, jit in [(n, j) for j in {"off": [False], "on": [True], "both": [False, True]}[args.jit]
                   for n in args.widths]:
        x = tf.constant(rng.normal(size=(args.batch, n)).astype("float32"))
        layers = build_layers(n, args.levels, args.filter_length)
        steps = {name: make_step(layer, jit) for name, layer in layers.items()}
        for step in steps.values():  # trace + warm up
            for _ in range(2):
                tf.nest.map_structure(lambda t: t.numpy(), step(x))
        times = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    out = step(x)
                out[0].numpy()
                times[name].append((time.perf_counter() - t0) / args.steps)
        row = {"n": n, "jit": jit, "batch": args.batch,
               "params": {k: int(l.count_params()) for k, l in layers.items()},
               "all_ms": {k: [t * 1e3 for t in v] for k, v in times.items()}}
        for name in steps:
            med = float(np.median(times[name]))
            row[f"{name}_ms"] = med * 1e3
            row[f"{name}_samples_per_s"] = args.batch / med
            # ratio per round (same round = same machine load), then the median of the ratios
            ratios = np.asarray(times[name]) / np.asarray(times["dense"])
            row[f"{name}_time_vs_dense"] = float(np.median(ratios))
        results.append(row)
        print(
            f"n={n:5d} jit={jit}  dense {row['dense_ms']:8.2f} ms  wavelet {row['wavelet_ms']:8.2f} ms "
            f"(x{row['wavelet_time_vs_dense']:.2f})  fastfood {row['fastfood_ms']:8.2f} ms "
            f"(x{row['fastfood_time_vs_dense']:.2f})  params {row['params']}",
            flush=True,
        )
    print(rec.write({"args": vars(args), "rows": results}))
    return results


if __name__ == "__main__":
    main()
