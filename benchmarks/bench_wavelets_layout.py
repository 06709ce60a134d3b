"""The transforms' layout outside XLA (issue 14): the axes-first copy against the caller's layout.

Outside XLA the kernels are convolutions vectorised over the elements that follow the
transformed axis. `dwt_keras.transforms._dwt.in_fast_layout` moves the transformed axes of a
batch first (every kernel then depthwise over batch x channels) while the first axis' filters
hold at most `MAX_FILTER_VALUES` values. This benchmark builds both layouts in one process
(`MAX_FILTER_VALUES = 0` keeps the caller's layout, as before) and times them interleaved
against PyWavelets: the plain `tf.function` round trip, a new `tf.data` iterator per call (the
shared check's `next(iter(ds))`) and the first call (trace).

    python benchmarks/bench_wavelets_layout.py --threads 1

Result: `benchmarks/results/wavelet_layout.json`.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _record import Recorder  # noqa: E402  (also puts the repository first on sys.path)

CASES = {
    "A": ((64, 256, 256), (-2, -1)), "B": ((16, 256, 256, 3), (1, 2)), "D": ((64, 65536), (-1,)),
}


def _round_trip(W, case, wavelet, mode):
    _, axes = CASES[case]
    if len(axes) == 2:
        return lambda t: W.waverec2(W.wavedec2(t, wavelet, mode, 3, axes), wavelet, mode, axes)
    return lambda t: W.waverec(W.wavedec(t, wavelet, mode, 5, axes[0]), wavelet, mode, axes[0])


def _pywt_round_trip(case, wavelet, mode, x):
    import pywt

    _, axes = CASES[case]
    if len(axes) == 2:
        return lambda: pywt.waverec2(pywt.wavedec2(x, wavelet, mode, 3, axes), wavelet, mode, axes)
    return lambda: pywt.waverec(pywt.wavedec(x, wavelet, mode, 5, axes[0]), wavelet, mode,
                                axes[0])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cases", default="A,B,D")
    p.add_argument("--wavelet", default="db4")
    p.add_argument("--modes", default="periodization,symmetric")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="wavelet_layout")
    a = p.parse_args()
    rec = Recorder(a.name)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    from dwt_keras import wavelets as W
    from dwt_keras.transforms import _dwt

    default_values = _dwt.MAX_FILTER_VALUES
    rows = []
    for case in a.cases.split(","):
        shape, _ = CASES[case]
        x = np.random.default_rng(0).standard_normal(shape).astype("float32")
        xt = tf.constant(x)
        for mode in a.modes.split(","):
            fns, first = {}, {}
            for layout, values in (("caller's", 0), ("axes first", default_values)):
                _dwt.MAX_FILTER_VALUES = values  # read when tracing: each keeps its layout
                fn = _round_trip(W, case, a.wavelet, mode)
                graph = tf.function(fn)
                t0 = time.perf_counter()
                out = graph(xt).numpy()
                first[layout] = time.perf_counter() - t0
                ds = tf.data.Dataset.from_tensors(xt).map(fn)
                next(iter(ds))
                fns[(layout, "tf.function")] = lambda g=graph: g(xt).numpy()
                fns[(layout, "tf.data new iterator")] = lambda d=ds: next(iter(d)).numpy()
                err = float(np.abs(out[tuple(slice(0, n) for n in x.shape)] - x).max())
                rows.append({"case": case, "mode": mode, "layout": layout,
                             "contender": "first call", "seconds": first[layout],
                             "round_trip_max_abs_err": err})
            _dwt.MAX_FILTER_VALUES = default_values
            fns[("pywt", "pywt")] = _pywt_round_trip(case, a.wavelet, mode, x)
            times = {k: [] for k in fns}
            for r in range(a.repeats):
                for k in list(fns)[r % len(fns):] + list(fns)[:r % len(fns)]:
                    t0 = time.perf_counter()
                    fns[k]()
                    times[k].append(time.perf_counter() - t0)
            pywt_ms = 1e3 * float(np.median(times[("pywt", "pywt")]))
            for (layout, contender), ts in times.items():
                ms = 1e3 * float(np.median(ts))
                rows.append({"case": case, "mode": mode, "layout": layout,
                             "contender": contender, "median_ms": ms,
                             "ratio_to_pywt": ms / pywt_ms})
                print(f"{case} {mode:13s} {layout:10s} {contender:22s} {ms:8.1f} ms "
                      f"({ms / pywt_ms:.2f} of pywt)", flush=True)
    print(rec.write({"args": vars(a), "rows": rows}))


if __name__ == "__main__":
    main()
