"""Training-step time of the structured GRUs: structured vs materialised recurrent matrices.

Times one optimizer step (forward + backward + RMSprop update, `model.train_on_batch`) of the
adding-problem model (`build_sequence_model`: GRU layer + Dense(1), MSE) for every variant, in
round-robin rounds within one process so that machine load hits all variants alike, and reports
the median time per step and the median per-round ratio to the first variant.

Usage:
  python benchmarks/bench_gru_step.py --hidden 128 512 --seq_len 150 --batch 50 --rounds 5 --steps 3
  python benchmarks/bench_gru_step.py --hidden 512 --jit both --variants wavelet-materialized gru

Writes `benchmarks/results/<--name>.json` through `_record.py` (command, commit, machine, load
before and after: a timing is a figure only when the file says `"quiet": true`).

Variants: `wavelet-structured`, `wavelet-materialized`, `fastfood-structured`,
`fastfood-materialized` (all three recurrent matrices compressed) and `gru` (keras.layers.GRU).
"""

import argparse
import statistics
import time

from _record import Recorder  # also puts the repository first on sys.path

VARIANTS = ("wavelet-structured", "wavelet-materialized", "fastfood-structured", "fastfood-materialized", "gru")


def _parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--seq_len", type=int, default=150)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    parser.add_argument("--variants", nargs="+", default=["wavelet-structured", "wavelet-materialized", "gru"],
                        choices=VARIANTS)
    parser.add_argument("--jit", choices=("off", "on", "both"), default="off",
                        help="model.compile(jit_compile=...) (XLA)")
    parser.add_argument("--threads", type=int, default=1, help="TF intra/inter-op threads")
    parser.add_argument("--name", default="gru_step", help="result file: benchmarks/results/<name>.json")
    args = parser.parse_args(argv)
    if min(args.hidden) < 1 or args.rounds < 1 or args.steps < 1 or args.batch < 1 or args.seq_len < 2:
        parser.error("--hidden, --rounds, --steps, --batch must be >= 1 and --seq_len >= 2.")
    return args


def _build(variant, hidden, seq_len, jit):
    import keras

    from dwt_keras.learnable.models import build_sequence_model
    from dwt_keras.learnable.recurrent import FastfoodGRU
    from dwt_keras.learnable.recurrent import WaveletGRU

    if variant == "gru":
        model = build_sequence_model("gru", input_shape=(seq_len, 2), hidden=hidden, seed=0)
    else:
        kind, impl = variant.split("-")
        inputs = keras.Input((seq_len, 2))
        if kind == "wavelet":
            rnn = WaveletGRU(hidden, compress="all", filter_length=6, seed=0, recurrent_impl=impl)
        else:
            rnn = FastfoodGRU(hidden, compress="all", seed=0, recurrent_impl=impl)
        model = keras.Model(inputs, keras.layers.Dense(1)(rnn(inputs)))
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3, clipnorm=1.0), loss="mse", jit_compile=jit)
    return model


def main(argv=None):
    args = _parse_args(argv)
    rec = Recorder(args.name)
    import numpy as np
    from _timing import set_tf_threads

    set_tf_threads(args.threads)
    from dwt_keras.learnable.tasks import adding_batch

    x, y = adding_batch(args.batch, args.seq_len, np.random.default_rng(0))
    jits = {"off": [False], "on": [True], "both": [False, True]}[args.jit]
    results = []
    for hidden in args.hidden:
        configs = [(v, j) for v in args.variants for j in jits]
        models = {}
        for variant, jit in configs:
            model = _build(variant, hidden, args.seq_len, jit)
            t0 = time.perf_counter()
            model.train_on_batch(x, y)  # trace / compile
            models[(variant, jit)] = model
            print(f"hidden {hidden} {variant} jit={jit}: params {model.count_params()}, "
                  f"first step {time.perf_counter() - t0:.1f} s", flush=True)
        times = {c: [] for c in configs}
        for r in range(args.rounds):
            for c in configs:
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    models[c].train_on_batch(x, y)
                times[c].append((time.perf_counter() - t0) / args.steps)
            print(f"hidden {hidden} round {r}: " + ", ".join(f"{v}/jit={j} {times[(v, j)][-1]:.3f}s"
                                                             for v, j in configs), flush=True)
        ref = configs[0]
        for c in configs:
            ratios = [a / b for a, b in zip(times[c], times[ref])]
            results.append({
                "hidden": hidden, "variant": c[0], "jit": c[1], "params": models[c].count_params(),
                "median_s_per_step": statistics.median(times[c]), "all_s_per_step": times[c],
                f"median_ratio_to_{ref[0]}_jit{ref[1]}": statistics.median(ratios),
            })
    print("| hidden | variant | jit | params | s / step (median) | ratio to first |")
    print("|---|---|---|---|---|---|")
    for row in results:
        ratio = [v for k, v in row.items() if k.startswith("median_ratio")][0]
        print(f"| {row['hidden']} | {row['variant']} | {row['jit']} | {row['params']:,} | "
              f"{row['median_s_per_step']:.3f} | {ratio:.3f} |")
    print(rec.write({"args": vars(args), "rows": results}))


if __name__ == "__main__":
    main()
