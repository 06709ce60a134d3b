"""Training and inference throughput: W-MSA-tiny vs ViT-tiny (same run, CPU).

Both models: width 96, depth 4, 3 heads, MLP ratio 2, 32x32x3 inputs, 64 tokens
(ViT 4x4 patches; W-MSA db4, J=3, periodization, 4x4 grouping per subband).
Also measured: the kernel applied as a shared (heads, N, N) bias vs folded into
q/k, the W-MSA without the kernel, and (optional) ungrouped tokens (p=1, 1024).

Timing: a compiled train step (`model.train_on_batch` after warm-up) and a
tf.function forward pass on one fixed batch, repeated; models are interleaved
round by round so machine load hits all of them alike; medians are reported and
the ratios are taken against ViT within the same round.

Usage:
    python benchmarks/bench_wmsa_throughput.py --batch_size 128 --rounds 7 \
        --out benchmarks/results/wmsa_throughput.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dwt_keras.transformer import ViT, WaveletTransformer  # noqa: E402


def variants(include_p1):
    common = dict(image_size=(32, 32), in_channels=3, num_classes=10, model_size="tiny")
    out = {
        "vit_tiny_p4": lambda: ViT(patch_size=4, **common),
        "wmsa_tiny_fold": lambda: WaveletTransformer(kernel_mode="fold", **common),
        "wmsa_tiny_bias": lambda: WaveletTransformer(kernel_mode="bias", **common),
        "wmsa_tiny_nokernel": lambda: WaveletTransformer(use_kernel=False, **common),
    }
    if include_p1:
        out["wmsa_tiny_p1_fold"] = lambda: WaveletTransformer(patch_size=1, kernel_mode="fold", **common)
        out["wmsa_tiny_p1_bias"] = lambda: WaveletTransformer(patch_size=1, kernel_mode="bias", **common)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch_size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round (median taken)")
    ap.add_argument("--include_p1", action="store_true", help="also ungrouped tokens (slow)")
    ap.add_argument("--jit_compile", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/wmsa_throughput.json")
    args = ap.parse_args()

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch_size, 32, 32, 3), dtype=np.float32))
    y = tf.constant(np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.batch_size)])

    models, infer = {}, {}
    for name, make in variants(args.include_p1).items():
        m = make()
        m.compile(
            optimizer=keras.optimizers.AdamW(1e-3),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            jit_compile=args.jit_compile,
        )
        m.train_on_batch(x, y)  # trace + warm-up
        f = tf.function(lambda t, m=m: m(t, training=False), jit_compile=args.jit_compile)
        f(x)
        models[name], infer[name] = m, f
        print(f"{name}: params={m.count_params()} tokens={m.num_tokens}", flush=True)

    train_t = {n: [] for n in models}
    infer_t = {n: [] for n in models}
    for r in range(args.rounds):
        for name, m in models.items():
            ts = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                m.train_on_batch(x, y)
                ts.append(time.perf_counter() - t0)
            train_t[name].append(float(np.median(ts)))
            ts = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                infer[name](x).numpy()
                ts.append(time.perf_counter() - t0)
            infer_t[name].append(float(np.median(ts)))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} {train_t[n][-1] * 1e3:.0f}/{infer_t[n][-1] * 1e3:.0f} ms" for n in models), flush=True)

    b = args.batch_size
    results = {}
    for name in models:
        tr, inf = np.array(train_t[name]), np.array(infer_t[name])
        ratio_tr = tr / np.array(train_t["vit_tiny_p4"])
        ratio_inf = inf / np.array(infer_t["vit_tiny_p4"])
        results[name] = {
            "params": int(models[name].count_params()),
            "tokens": int(models[name].num_tokens),
            "train_ms_per_step_median": float(np.median(tr) * 1e3),
            "train_images_per_s": float(b / np.median(tr)),
            "infer_ms_per_batch_median": float(np.median(inf) * 1e3),
            "infer_images_per_s": float(b / np.median(inf)),
            "train_time_ratio_vs_vit_median": float(np.median(ratio_tr)),
            "infer_time_ratio_vs_vit_median": float(np.median(ratio_inf)),
        }
    cpu = subprocess.run(["bash", "-c", "lscpu | grep 'Model name'"], capture_output=True, text=True).stdout.strip()
    out = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": f"{os.cpu_count()}-core {platform.machine()} ({cpu}), shared, TF {tf.__version__}, Keras {keras.__version__}",
        "batch_size": b,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "jit_compile": args.jit_compile,
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
    os.replace(tmp, args.out)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
