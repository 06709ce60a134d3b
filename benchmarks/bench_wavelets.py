"""Benchmark: dwt_keras transforms in every execution mode, against PyWavelets.

For each case (array shape and axes), wavelet and mode it times forward + inverse
(``wavedec2`` + ``waverec2``, or ``wavedec`` + ``waverec`` for the 1-D case) as users run
it, and PyWavelets (``pywt``, C, one core) on the same float32 NumPy array in the same
process:

* ``eager``: the functions called eagerly on a tensor;
* ``tf.function``: inside a plain ``tf.function`` (a graph, no XLA: what Keras runs without
  ``jit_compile`` and what ``tf.data`` runs);
* ``xla``: inside ``tf.function(jit_compile=True)``;
* ``tf.data.map``: ``Dataset.from_tensors(x).map(f)``;
* ``fit`` / ``fit xla``: one ``train_on_batch`` step of a Keras model whose layer runs the
  round trip (forward, backward and the optimizer), ``jit_compile`` False / True;
* ``eager fwd+bwd`` / ``xla fwd+bwd``: the gradient of ``sum(roundtrip(x)^2)``.

Every contender is first checked against PyWavelets (float64) on the case; repetitions are
interleaved (the order rotates every round) and medians reported, with the first call's
time (tracing / compiling) separately. The result goes to
``benchmarks/results/<--name>.json`` through ``_record.Recorder``.

Usage (the full grid takes ~10 minutes on 2 idle cores; check ``uptime`` first):
    python benchmarks/bench_wavelets.py
    python benchmarks/bench_wavelets.py --cases A --wavelets db4 --modes periodization --repeats 3 --name pilot
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np
import pywt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from _record import Recorder  # noqa: E402
from _timing import interleaved, set_tf_threads  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from dwt_keras import wavelets as W  # noqa: E402

#: name -> (shape, axes or axis, 2-D?, level)
CASES = {
    "A": ((64, 256, 256), (-2, -1), True, 3),
    "B": ((16, 256, 256, 3), (1, 2), True, 3),
    "C": ((1024, 32, 32), (-2, -1), True, 3),
    "D": ((64, 65536), -1, False, 5),
}
CASE_NAMES = {
    "A": "64x256x256", "B": "16x256x256x3 channels-last", "C": "1024x32x32",
    "D": "1-D 64x65536",
}
CONTENDERS = ("eager", "tf.function", "xla", "tf.data.map", "fit", "fit xla",
              "eager fwd+bwd", "xla fwd+bwd")


def _round_trip(case, wavelet, mode):
    _, axes, two_d, level = CASES[case]
    if two_d:
        return lambda t: W.waverec2(W.wavedec2(t, wavelet, mode, level, axes), wavelet, mode, axes)
    return lambda t: W.waverec(W.wavedec(t, wavelet, mode, level, axes), wavelet, mode, axes)


def _pywt_round_trip(case, wavelet, mode):
    _, axes, two_d, level = CASES[case]
    if two_d:
        return lambda a: pywt.waverec2(pywt.wavedec2(a, wavelet, mode, level, axes), wavelet, mode, axes)
    return lambda a: pywt.waverec(pywt.wavedec(a, wavelet, mode, level, axes), wavelet, mode, axes)


class _Layer(keras.layers.Layer):
    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self.fn = fn

    def build(self, shape):
        self.gain = self.add_weight(shape=(), initializer="ones", name="gain")

    def call(self, x):
        return self.fn(x * self.gain)


def _fit_step(fn, x, jit):
    model = keras.Sequential([keras.Input(x.shape[1:]), _Layer(fn)])
    model.compile(keras.optimizers.SGD(1e-3), "mse", jit_compile=jit)
    return lambda: model.train_on_batch(x, x)


def _contenders(case, wavelet, mode, x):
    fn = _round_trip(case, wavelet, mode)
    xt = tf.constant(x)
    graph, xla = tf.function(fn), tf.function(fn, jit_compile=True)
    ds = tf.data.Dataset.from_tensors(xt).map(fn)

    def grad(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            loss = tf.reduce_sum(fn(t) ** 2)
        return tape.gradient(loss, t)

    grad_xla = tf.function(grad, jit_compile=True)
    return {
        "eager": lambda: fn(xt).numpy(),
        "tf.function": lambda: graph(xt).numpy(),
        "xla": lambda: xla(xt).numpy(),
        "tf.data.map": lambda: next(iter(ds)).numpy(),
        "fit": _fit_step(fn, x, False),
        "fit xla": _fit_step(fn, x, True),
        "eager fwd+bwd": lambda: grad(xt).numpy(),
        "xla fwd+bwd": lambda: grad_xla(xt).numpy(),
    }


def _crop(y, x):
    return y[tuple(slice(0, n) for n in x.shape)]


def run_case(case, wavelet, mode, repeats, contenders, rng):
    shape = CASES[case][0]
    x = rng.standard_normal(shape).astype(np.float32)
    ref = _pywt_round_trip(case, wavelet, mode)
    fns = {k: v for k, v in _contenders(case, wavelet, mode, x).items() if k in contenders}
    fns["pywt"] = lambda: ref(x)
    expected = _crop(ref(x.astype(np.float64)), x)
    first, med, outputs = interleaved(fns, repeats)
    errors = {k: float(np.abs(_crop(np.asarray(outputs[k]), x) - expected).max())
              for k in ("eager", "tf.function", "xla", "tf.data.map", "pywt") if k in outputs}
    names = list(fns)
    rows = []
    for k in names:
        rows.append({
            "case": case, "shape": list(shape), "wavelet": wavelet, "mode": mode,
            "level": CASES[case][3], "contender": k, "median_ms": 1e3 * med[k],
            "first_call_s": first[k], "ratio_to_pywt": med[k] / med["pywt"],
            "max_abs_err_vs_pywt_f64": errors.get(k),
        })
    for k in ("eager fwd+bwd", "xla fwd+bwd"):
        base = "eager" if k.startswith("eager") else "xla"
        if k in med and base in med:
            rows.append({"case": case, "wavelet": wavelet, "mode": mode, "contender": k + " / fwd+inv",
                         "ratio": med[k] / med[base]})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default="A,B,C,D")
    p.add_argument("--wavelets", default="haar,db4,sym8,coif3,bior4.4")
    p.add_argument("--modes", default="periodization,symmetric,zero")
    p.add_argument("--all_wavelets_cases", default="A",
                   help="cases run for every wavelet; the others run db4 only")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--name", default="wavelet_modes")
    p.add_argument("--threads", type=int, default=0,
                   help="TF intra/inter-op threads (0: TensorFlow's default; 1: one core, as "
                        "PyWavelets, and the run adds about 1 to the load average)")
    a = p.parse_args()
    set_tf_threads(a.threads)
    tf.get_logger().setLevel("ERROR")
    warnings.filterwarnings("ignore", message="Level value of")
    rec = Recorder(a.name)
    rng = np.random.default_rng(0)
    rows = []
    contenders = a.contenders.split(",")
    for case in a.cases.split(","):
        wavelets = a.wavelets.split(",") if case in a.all_wavelets_cases.split(",") else ["db4"]
        for wavelet in wavelets:
            for mode in a.modes.split(","):
                case_rows = run_case(case, wavelet, mode, a.repeats, contenders, rng)
                rows.extend(case_rows)
                summary = "  ".join(
                    f"{r['contender']} {r['ratio_to_pywt']:.2f}" for r in case_rows if "ratio_to_pywt" in r
                )
                print(f"{case} {wavelet} {mode} load {os.getloadavg()[0]:.1f}: {summary}", flush=True)
                keras.backend.clear_session()
    path = rec.write({"rows": rows, "cases": {k: CASE_NAMES[k] for k in CASES}}, seeds=[0])
    print("wrote", path)


if __name__ == "__main__":
    main()
