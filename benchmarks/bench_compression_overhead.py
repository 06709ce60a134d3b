"""Epoch time of retraining with the coefficient masks held vs a plain fit(), same process.

Each variant is a LeNet-300-100 on MNIST (a fixed training subset), compiled alike; the variants
are timed interleaved (round-robin) for --repeats rounds after a warm-up epoch, and the medians of
wall time and of process CPU time (less sensitive to other processes on a shared machine) are
reported as ratios to the plain fit() in the same run.

    python benchmarks/bench_compression_overhead.py --batch_sizes 32,128 --repeats 5
"""

import argparse
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch_sizes", default="32,128")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n_train", type=int, default=9600)
    p.add_argument("--variants", default="plain,identity,haar,db4,dct,haar-nojit")
    p.add_argument("--out", default="benchmarks/results/compression_overhead.json")
    a = p.parse_args()

    import keras
    from _timing import fit_epoch_times

    from dwt_keras.compression import compress_model, constraints
    from dwt_keras.data import load_arrays
    from dwt_keras.experiments.registry import build_model
    from dwt_keras.utils.io import atomic_write_json

    s = load_arrays("mnist")
    x, y = s.x_train[: a.n_train], s.y_train[: a.n_train]
    results = {"machine": {"cpu": platform.processor() or platform.machine(),
                           "nproc": os.cpu_count(), "load_avg_start": os.getloadavg()},
               "n_train": a.n_train, "repeats": a.repeats, "batch_sizes": {}}
    for bs in [int(b) for b in a.batch_sizes.split(",")]:
        models = {}
        for v in a.variants.split(","):
            keras.utils.set_random_seed(0)
            basis, _, flag = v.partition("-")
            constraints.JIT_PROJECTION = flag != "nojit"
            m = build_model("lenet300", (28, 28, 1), 10)
            m.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
            if basis != "plain":
                compress_model(m, keep_ratio=0.05, basis=basis)
            models[v] = m
        res = fit_epoch_times(models, x, y, bs, a.repeats)
        for k, m in models.items():
            if k != "plain":
                res[k]["mask_projection_error"] = constraints.get_state(m).max_hold_error()[
                    "projection_error"]
        results["batch_sizes"][bs] = res
        print(f"batch {bs}: " + ", ".join(f"{k}: wall x{r['wall_ratio']:.3f} cpu x{r['cpu_ratio']:.3f}"
                                          for k, r in res.items()), flush=True)
    results["machine"]["load_avg_end"] = os.getloadavg()
    atomic_write_json(a.out, results)


if __name__ == "__main__":
    main()
