"""Interleaved timing shared by the benchmarks (imports nothing heavy)."""

import time

import numpy as np


def interleaved(fns, repeats):
    """Times each callable once (the first call), then ``repeats`` rounds in rotating order.

    Returns ``(first_call_s, median_s, first_outputs)``, dicts keyed like ``fns``.
    """
    first, outputs = {}, {}
    for k, f in fns.items():
        t = time.perf_counter()
        outputs[k] = f()
        first[k] = time.perf_counter() - t
    names = list(fns)
    times = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return first, {k: float(np.median(v)) for k, v in times.items()}, outputs
