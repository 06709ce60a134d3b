"""Timing helpers shared by the benchmarks (import nothing heavy at module level).

* `interleaved(fns, repeats)`: callables timed in rotating order, medians and first calls;
* `fit_epoch_times(models, x, y, ...)`: one `fit()` epoch per model and round, round robin,
  medians and ratios to a baseline (wall and process CPU time);
* `set_tf_threads(n)`: TensorFlow's intra- and inter-op threads, before anything runs.
"""

import time

import numpy as np


def set_tf_threads(n):
    """Sets TensorFlow's intra- and inter-op threads to `n` (0 or None: TensorFlow's default).

    One thread keeps a quiet 2-core machine quiet (the run adds about 1 to the load average), so
    that the load after the run shows whether anything else ran. Call it before any op runs.
    """
    if n:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(int(n))


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


def fit_epoch_times(models, x, y, batch_size, repeats, baseline="plain", warmup=True):
    """One ``fit()`` epoch per model and round, `repeats` rounds after an untimed warm-up epoch.

    Returns ``{name: {"wall_s_median", "cpu_s_median", "wall_ratio", "cpu_ratio", "wall_s",
    "cpu_s"}}``, the ratios over `baseline`'s medians (wall time and process CPU time, the
    latter less sensitive to other processes on a shared machine).
    """
    if warmup:
        for m in models.values():
            m.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)  # tracing, compilation
    wall = {k: [] for k in models}
    cpu = {k: [] for k in models}
    for _ in range(repeats):
        for k, m in models.items():
            t0, c0 = time.perf_counter(), time.process_time()
            m.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    base_w, base_c = np.median(wall[baseline]), np.median(cpu[baseline])
    return {k: {"wall_s_median": float(np.median(wall[k])), "cpu_s_median": float(np.median(cpu[k])),
                "wall_ratio": float(np.median(wall[k]) / base_w),
                "cpu_ratio": float(np.median(cpu[k]) / base_c),
                "wall_s": wall[k], "cpu_s": cpu[k]} for k in models}
