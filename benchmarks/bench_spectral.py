"""Throughput of spectral truncation: SpectralTruncation vs a NumPy/SciPy dctn reference.

Measures, in one process and interleaved repeat by repeat (so both see the same
machine load):

1. the DCT implementations (`matmul` vs `fft`, forward + mask + inverse,
   tf.function, optionally XLA) at several image sizes -- the measurement behind
   `dct.MATMUL_MAX_SIZE`;
2. the `SpectralTruncation` layer in training mode on 16x256x256x3 float32
   batches against `scipy.fft.idctn(scipy.fft.dctn(x) * mask)` (one worker and
   all workers), with medians and ratios.

Usage:
    python benchmarks/bench_spectral.py [--repeats 15] [--out results.json]
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import scipy.fft  # noqa: E402
import tensorflow as tf  # noqa: E402

from dwt_keras.spectral import SpectralTruncation, spectral_mask  # noqa: E402
from dwt_keras.spectral.dct import lowpass_dct2  # noqa: E402


def _median_ms(times):
    return float(np.median(times) * 1e3)


def _interleaved(fns, repeats):
    """Calls every fn once per round, `repeats` rounds; returns {name: [seconds]}."""
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def bench_methods(repeats):
    rows = []
    for size, batch in ((32, 256), (64, 64), (128, 16), (256, 16)):
        x = tf.constant(np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32))
        mask = tf.constant(spectral_mask(size, size, 0.5))
        fns = {}
        for method in ("matmul", "fft"):
            for jit in (False, True):
                f = tf.function(lambda t, m=method: lowpass_dct2(t, mask, m), jit_compile=jit)
                f(x).numpy()  # trace / compile
                fns[f"{method}{'+xla' if jit else ''}"] = lambda f=f: f(x).numpy()
        t = _interleaved(fns, repeats)
        row = {"size": size, "batch": batch, **{k: _median_ms(v) for k, v in t.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def bench_layer(repeats, batch=16, size=256, tau=0.5):
    rng = np.random.default_rng(0)
    x_np = rng.random((batch, size, size, 3), dtype=np.float32)
    x = tf.constant(x_np)
    mask = spectral_mask(size, size, tau, "cosine")
    mask4 = mask[None, :, :, None]

    def scipy_ref(workers):
        c = scipy.fft.dctn(x_np, axes=(1, 2), norm="ortho", workers=workers)
        return scipy.fft.idctn(c * mask4, axes=(1, 2), norm="ortho", workers=workers)

    fns = {}
    for method in ("auto", "matmul"):
        for jit in (False, True):
            layer = SpectralTruncation(tau=tau, profile="cosine", method=method)
            f = tf.function(lambda t, l=layer: l(t, training=True), jit_compile=jit)
            out = f(x).numpy()
            err = float(np.abs(out - scipy_ref(1)).max())
            assert err < 1e-4, err
            fns[f"layer[{method}{'+xla' if jit else ''}]"] = lambda f=f: f(x).numpy()
    fns["scipy(workers=1)"] = lambda: scipy_ref(1)
    fns["scipy(workers=all)"] = lambda: scipy_ref(-1)
    for f in fns.values():
        f()  # warm-up
    t = _interleaved(fns, repeats)
    med = {k: _median_ms(v) for k, v in t.items()}
    ref = med["scipy(workers=1)"]
    res = {
        "shape": [batch, size, size, 3],
        "median_ms": med,
        "images_per_s": {k: batch / (v / 1e3) for k, v in med.items()},
        "ratio_vs_scipy1 (>1: faster than SciPy)": {k: ref / v for k, v in med.items()},
        "repeats": repeats,
    }
    print(json.dumps(res, indent=1), flush=True)
    return res


def machine():
    from dwt_keras.utils.machine import cpu_model

    cpu = cpu_model()
    gpus = tf.config.list_physical_devices("GPU")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{os.cpu_count()}-core {platform.machine()} ({cpu}), shared (load average {load} at "
            f"start); TF {tf.__version__}; {'GPU: ' + str(gpus) if gpus else 'no GPU'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.repeats < 1:
        raise ValueError("--repeats must be >= 1")
    res = {"machine": machine(), "command": "python " + " ".join(sys.argv)}
    res["methods"] = bench_methods(max(3, args.repeats // 2))
    res["layer"] = bench_layer(args.repeats)
    res["load_average_end"] = list(os.getloadavg())
    if args.out:
        from dwt_keras.utils.io import atomic_write_json

        atomic_write_json(args.out, res)


if __name__ == "__main__":
    main()
