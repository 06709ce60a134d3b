"""Where the time of `wavedec2` + `waverec2` inside `tf.data.Dataset.map` goes.

`../shared/checks/transform_modes.py` times `next(iter(ds))` on a one-element dataset: every
call builds a new iterator, and a new iterator instantiates (and Grappler-optimises) the map
function again. This script separates the two costs, in one process, in rotating order
(`_timing.interleaved`):

* `tf.function`: the traced round trip (the compute alone);
* `new iterator`: `next(iter(ds))`, as the shared check does (instantiation + compute);
* `kept iterator`: one iterator over `ds.repeat()`, kept across calls, with autotuning and
  prefetch injection off (so each call computes one element: the compute through tf.data);
* `new iterator, identity map`: the same dataset with `map(tf.identity)` (tf.data's own
  per-iterator cost);
* `pywt`: PyWavelets' round trip.

Each row also records the size of the traced round trip (`graph_nodes`, and those not `Const`):
what a new iterator instantiates and Grappler optimises.

Usage:
  python benchmarks/bench_tfdata_iterator.py --wavelet db4 --level 3 --shape 64,256,256 \
      --modes periodization symmetric --repeats 5

Writes `benchmarks/results/<--name>.json` through `_record.py`.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _record import Recorder  # noqa: E402  (also puts the repository first on sys.path)
from _timing import interleaved  # noqa: E402

import numpy as np  # noqa: E402
import pywt  # noqa: E402
import tensorflow as tf  # noqa: E402

from dwt_keras.wavelets import wavedec2, waverec2  # noqa: E402


def _contenders(x, wavelet, level, mode):
    """``(callables timed, the size of the traced round trip)``: ``(all nodes, non-Const)``."""
    xt = tf.constant(x)

    def roundtrip(t):
        return waverec2(wavedec2(t, wavelet, level=level, mode=mode), wavelet, mode=mode)

    graph = tf.function(roundtrip)
    ds = tf.data.Dataset.from_tensors(xt).map(roundtrip)
    identity = tf.data.Dataset.from_tensors(xt).map(tf.identity)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.inject_prefetch = False
    kept = iter(tf.data.Dataset.from_tensors(xt).repeat().map(roundtrip).with_options(options))
    ops = graph.get_concrete_function(xt).graph.get_operations()  # the trace the timing uses
    return {
        "tf.function": lambda: graph(xt).numpy(),
        "new iterator": lambda: next(iter(ds)).numpy(),
        "kept iterator": lambda: next(kept).numpy(),
        "new iterator, identity map": lambda: next(iter(identity)).numpy(),
        "pywt": lambda: pywt.waverec2(pywt.wavedec2(x, wavelet, level=level, mode=mode),
                                      wavelet, mode=mode),
    }, (len(ops), sum(o.type != "Const" for o in ops))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wavelet", default="db4")
    p.add_argument("--level", type=int, default=3)
    p.add_argument("--shape", default="64,256,256")
    p.add_argument("--modes", nargs="+", default=["periodization", "symmetric"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--name", default="tfdata_iterator")
    a = p.parse_args()
    rec = Recorder(a.name)
    shape = tuple(int(s) for s in a.shape.split(","))
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    rows = []
    for mode in a.modes:
        fns, nodes = _contenders(x, a.wavelet, a.level, mode)
        for f in fns.values():  # trace and warm up before the timed first calls
            f()
        first, med, _ = interleaved(fns, a.repeats)
        row = {"mode": mode, "median_ms": {k: 1e3 * v for k, v in med.items()},
               "ratio_to_pywt": {k: v / med["pywt"] for k, v in med.items()},
               "first_call_ms": {k: 1e3 * v for k, v in first.items()}}
        row["graph_nodes"], row["graph_nodes_not_const"] = nodes
        rows.append(row)
        print(mode, {k: f"{1e3 * v:.1f} ms ({v / med['pywt']:.2f})" for k, v in med.items()},
              flush=True)
    print(rec.write({"args": vars(a), "rows": rows}))


if __name__ == "__main__":
    main()
