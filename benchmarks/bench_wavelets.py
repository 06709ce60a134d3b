"""Benchmark: dwt_keras wavedec2 + waverec2 against PyWavelets.

Times a level-3 ``db4`` decomposition followed by its reconstruction
(periodization, float32) on

* A: a batch of 64 single-channel 256x256 images, shape (64, 256, 256),
  transformed over axes (-2, -1);
* B: a channels-last batch (16, 256, 256, 3), transformed over axes (1, 2),

with ``pywt.wavedec2`` / ``pywt.waverec2`` on the same NumPy arrays in the
same process. Repetitions of the contenders are interleaved (their order
alternates) so that load from other processes on a shared machine hits both
alike; medians and the ratio ours / pywt are reported.

Contenders:

* ``dwt_keras`` : the public functions called eagerly on the NumPy array,
  result converted back to NumPy (large eager inputs run through the library's
  cached XLA function);
* ``dwt_keras (one tf.function)``: wavedec2 + waverec2 inside one
  ``tf.function(jit_compile=True)``, as inside a compiled Keras model;
* ``pywt``: ``pywt.wavedec2`` + ``pywt.waverec2``.

Usage:
    python benchmarks/bench_wavelets.py --repeats 15 \
        --out benchmarks/results/wavelets.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np
import pywt
import tensorflow as tf

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from dwt_keras import wavelets as W  # noqa: E402

WAVELET, LEVEL, MODE = "db4", 3, "periodization"
CASES = {
    "A: 64x256x256 (single channel)": ((64, 256, 256), (-2, -1)),
    "B: 16x256x256x3 (channels-last)": ((16, 256, 256, 3), (1, 2)),
}


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "pywt": pywt.__version__,
        "numpy": np.__version__,
        "gpus": gpus,
    }


def _contenders(x, axes, device):
    def ours():
        with tf.device(device):
            coeffs = W.wavedec2(x, WAVELET, level=LEVEL, mode=MODE, axes=axes)
            return W.waverec2(coeffs, WAVELET, mode=MODE, axes=axes).numpy()

    with tf.device(device):

        @tf.function(jit_compile=True)
        def fused(t):
            coeffs = W.wavedec2(t, WAVELET, level=LEVEL, mode=MODE, axes=axes)
            return W.waverec2(coeffs, WAVELET, mode=MODE, axes=axes)

    def ours_fused():
        with tf.device(device):
            return fused(tf.constant(x)).numpy()

    def ref():
        coeffs = pywt.wavedec2(x, WAVELET, MODE, level=LEVEL, axes=axes)
        return pywt.waverec2(coeffs, WAVELET, MODE, axes=axes)

    return {"dwt_keras": ours, "dwt_keras (one tf.function)": ours_fused, "pywt": ref}


def _check(x, axes):
    """Coefficients and reconstruction agree with PyWavelets (float32 bound)."""
    ours = W.wavedec2(x, WAVELET, level=LEVEL, mode=MODE, axes=axes)
    ref = pywt.wavedec2(x.astype(np.float64), WAVELET, MODE, level=LEVEL, axes=axes)
    flat_o = [ours[0]] + [c for d in ours[1:] for c in d]
    flat_r = [ref[0]] + [c for d in ref[1:] for c in d]
    coeff_err = max(float(np.abs(o.numpy() - r).max()) for o, r in zip(flat_o, flat_r))
    rec = W.waverec2(ours, WAVELET, mode=MODE, axes=axes).numpy()
    rec_err = float(np.abs(rec - x).max())
    scale = float(np.abs(x).max())
    assert coeff_err <= 1e-5 * scale and rec_err <= 1e-5 * scale, (coeff_err, rec_err)
    return coeff_err, rec_err


def _conv_dwt2(t, n_taps_lo, n_taps_hi):
    """Reference kernel: periodization dwt2 by strided (depthwise) convolutions."""
    f = len(n_taps_lo)
    pad = f // 2 - 1
    k = np.stack([n_taps_lo, n_taps_hi], -1).astype(np.float32)
    x = tf.expand_dims(t, -1)
    w = x.shape[2]
    x = tf.concat([x[:, :, w - pad :], x, x[:, :, : f - 2 - pad]], axis=2)
    y = tf.nn.conv2d(x, k[None, :, None, :], strides=(1, 1, 2, 1), padding="VALID")
    h = y.shape[1]
    y = tf.concat([y[:, h - pad :], y, y[:, : f - 2 - pad]], axis=1)
    k2 = np.repeat(k[:, None, None, :], 2, axis=2)
    return tf.nn.depthwise_conv2d(y, k2, strides=(1, 2, 1, 1), padding="VALID")


def compare_kernels(repeats):
    """One dwt2 level (db4, periodization, float32) with alternative kernels.

    Every input holds 64 * 256 * 256 elements; the side length varies.
    """
    bank = pywt.Wavelet(WAVELET)
    g_lo = np.array(bank.dec_lo[::-1])
    g_hi = np.array(bank.dec_hi[::-1])
    rows = []
    rng = np.random.default_rng(1)
    for side in (32, 64, 128, 256):
        x = tf.constant(
            rng.standard_normal((64 * (256 // side) ** 2, side, side)).astype(np.float32)
        )
        ref = pywt.dwt2(x.numpy(), WAVELET, MODE)[0]

        def with_dense(dense):
            # Traced once per shape, so the kernel choice is fixed at trace time.
            def fn(t):
                old = W._use_dense
                W._use_dense = lambda n, filter_len: dense
                try:
                    return W.dwt2(t, WAVELET, MODE)[0]
                finally:
                    W._use_dense = old

            return fn

        kernels = {
            "polyphase slices, XLA": tf.function(with_dense(False), jit_compile=True),
            "dense matrix, XLA": tf.function(with_dense(True), jit_compile=True),
            "dense matrix, graph": tf.function(with_dense(True)),
            "strided conv, graph": tf.function(lambda t: _conv_dwt2(t, g_lo, g_hi)[..., 0]),
            "strided conv, XLA": tf.function(
                lambda t: _conv_dwt2(t, g_lo, g_hi)[..., 0], jit_compile=True
            ),
        }
        for name, fn in kernels.items():
            out = fn(x).numpy()
            assert np.abs(out - ref).max() < 1e-4, name
        times = {k: [] for k in kernels}
        times["pywt.dwt2"] = []
        xn = x.numpy()
        for rep in range(repeats):
            for name, fn in kernels.items():
                t0 = time.perf_counter()
                fn(x).numpy()
                times[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pywt.dwt2(xn, WAVELET, MODE)
            times["pywt.dwt2"].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"side {side}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items()), flush=True)
        rows.append((side, tuple(x.shape), med))
    names = list(rows[0][2])
    lines = [
        "### Kernel choice (one dwt2 level, db4, periodization, float32, "
        f"4.2M elements per call, median of {repeats}, ms)",
        "",
        "| input | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for side, shape, med in rows:
        lines.append(f"| {shape} | " + " | ".join(f"{med[n]:.1f}" for n in names) + " |")
    lines.append("")
    return "\n".join(lines)


def run(repeats, warmup, device):
    rng = np.random.default_rng(0)
    results = {}
    for case, (shape, axes) in CASES.items():
        x = rng.standard_normal(shape).astype(np.float32)
        coeff_err, rec_err = _check(x, axes)
        fns = _contenders(x, axes, device)
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        times = {k: [] for k in fns}
        names = list(fns)
        for rep in range(repeats):
            order = names if rep % 2 == 0 else names[::-1]
            for k in order:
                t0 = time.perf_counter()
                fns[k]()
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        results[case] = {
            "shape": shape,
            "median_ms": med,
            "min_ms": {k: min(v) * 1e3 for k, v in times.items()},
            "coeff_err": coeff_err,
            "rec_err": rec_err,
            "images_per_s": {k: shape[0] / (m / 1e3) for k, m in med.items()},
        }
        ratio = med["dwt_keras"] / med["pywt"]
        ratio_f = med["dwt_keras (one tf.function)"] / med["pywt"]
        print(
            f"{case}: dwt_keras {med['dwt_keras']:.1f} ms, one tf.function "
            f"{med['dwt_keras (one tf.function)']:.1f} ms, pywt {med['pywt']:.1f} ms "
            f"-> ratio {ratio:.3f} (fused {ratio_f:.3f}); max|coef err| {coeff_err:.2e}, "
            f"max|rec err| {rec_err:.2e}",
            flush=True,
        )
    return results


def to_markdown(results, machine, command, repeats, device):
    lines = [
        "## Wavelet transform: dwt_keras vs PyWavelets",
        "",
        f"`wavedec2` + `waverec2`, `{WAVELET}`, level {LEVEL}, `{MODE}`, float32; "
        f"median of {repeats} interleaved repetitions (ms per call, lower is better); "
        "ratio = ours / pywt (target <= 1.0).",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine['cpu']}, nproc={machine['nproc']}, device `{device}`; "
        f"Python {machine['python']}, TensorFlow {machine['tensorflow']}, "
        f"PyWavelets {machine['pywt']}, NumPy {machine['numpy']}.",
        "",
        "| case | dwt_keras (eager API) | dwt_keras (one tf.function, XLA) | pywt | ratio eager | ratio fused | max coef err | max rec err |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, r in results.items():
        m = r["median_ms"]
        lines.append(
            f"| {case} | {m['dwt_keras']:.1f} | {m['dwt_keras (one tf.function)']:.1f} | "
            f"{m['pywt']:.1f} | **{m['dwt_keras'] / m['pywt']:.2f}** | "
            f"{m['dwt_keras (one tf.function)'] / m['pywt']:.2f} | {r['coeff_err']:.1e} | "
            f"{r['rec_err']:.1e} |"
        )
    lines.append("")
    lines.append(
        "Throughput (images per second, median): "
        + "; ".join(
            f"{case.split(':')[0]}: ours {r['images_per_s']['dwt_keras']:.0f}, "
            f"pywt {r['images_per_s']['pywt']:.0f}"
            for case, r in results.items()
        )
        + "."
    )
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="/CPU:0", help="TensorFlow device for dwt_keras")
    parser.add_argument("--out", default=None, help="markdown file to write (atomically)")
    parser.add_argument(
        "--compare-kernels",
        action="store_true",
        help="also time one dwt2 level with alternative kernels (conv, dense matrix)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        raise ValueError("--repeats must be >= 1 and --warmup >= 0.")
    machine = _machine()
    print(machine, flush=True)
    results = run(args.repeats, args.warmup, args.device)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])
    text = to_markdown(results, machine, command, args.repeats, args.device)
    if args.compare_kernels:
        text += "\n" + compare_kernels(max(3, args.repeats // 2))
    print(text)
    if args.out:
        from dwt_keras.utils.io import atomic_write_bytes

        atomic_write_bytes(args.out, text.encode())
    return results


if __name__ == "__main__":
    main()
