"""Benchmark: time and peak memory of the transforms against the signal length.

1-D: ``wavedec`` + ``waverec`` (db4, symmetric, level 5) of n = 10^3 ... 10^6 samples;
2-D: ``wavedec2`` + ``waverec2`` (db4, symmetric, level 3) of n x n images up to
4096 x 4096; float32, dwt_keras (eager) and PyWavelets in the same run. Each point runs in
a fresh child process, so its peak resident memory (``ru_maxrss``) minus the memory after
imports and the input array is the transform's own peak; the two libraries alternate
point by point. Times: the first call and the median of ``--repeats`` further calls.

Usage:
    python benchmarks/bench_wavelets_scaling.py            # -> results/wavelet_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

SIZES_1D = (1_000, 10_000, 100_000, 300_000, 1_000_000)
SIZES_2D = (256, 512, 1024, 2048, 4096)
WAVELET, MODE = "db4", "symmetric"


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(lib, dims, n, repeats):
    import numpy as np

    x = np.random.default_rng(0).standard_normal((n,) if dims == 1 else (n, n)).astype(np.float32)
    if lib == "pywt":
        import pywt

        if dims == 1:
            def run():
                return pywt.waverec(pywt.wavedec(x, WAVELET, MODE, 5), WAVELET, MODE)
        else:
            def run():
                return pywt.waverec2(pywt.wavedec2(x, WAVELET, MODE, 3), WAVELET, MODE)
    else:
        sys.path.insert(0, ROOT)
        import tensorflow as tf

        from dwt_keras import wavelets as W

        tf.constant(0.0) + 1.0  # initialise the runtime before the baseline
        if dims == 1:
            def run():
                return W.waverec(W.wavedec(x, WAVELET, MODE, 5), WAVELET, MODE).numpy()
        else:
            def run():
                return W.waverec2(W.wavedec2(x, WAVELET, MODE, 3), WAVELET, MODE).numpy()
    base = _rss_mb()
    t = time.perf_counter()
    out = run()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    err = float(np.abs(out[tuple(slice(0, s) for s in x.shape)] - x).max())
    print(json.dumps({
        "lib": lib, "dims": dims, "n": n, "first_call_s": first,
        "median_s": float(np.median(times)), "peak_mb_above_baseline": _rss_mb() - base,
        "input_mb": x.nbytes / 2**20, "max_reconstruction_error": err,
    }))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", nargs=3, metavar=("LIB", "DIMS", "N"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--name", default="wavelet_scaling")
    a = p.parse_args()
    if a.child:
        child(a.child[0], int(a.child[1]), int(a.child[2]), a.repeats)
        return
    from _record import Recorder

    rec = Recorder(a.name)
    rows = []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for dims, sizes in ((1, SIZES_1D), (2, SIZES_2D)):
        for n in sizes:
            for lib in ("pywt", "dwt_keras"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", lib, str(dims), str(n), "--repeats", str(a.repeats)],
                    capture_output=True, text=True, env=env, timeout=1200,
                )
                lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
                row = json.loads(lines[-1]) if lines else {"lib": lib, "dims": dims, "n": n, "error": out.stderr[-2000:]}
                rows.append(row)
                print(row, flush=True)
    print("wrote", rec.write({"rows": rows, "wavelet": WAVELET, "mode": MODE}, seeds=[0]))


if __name__ == "__main__":
    main()
