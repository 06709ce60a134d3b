"""Epoch times of several compiled models in one run: round robin, medians, ratios to a baseline.

    from _timing import fit_epoch_times          # benchmarks/ is the script's folder
    res = fit_epoch_times({"plain": a, "other": b}, x, y, batch_size=128, repeats=5)
    res["other"]["cpu_ratio"]                      # process CPU time over plain's
"""

import time


def fit_epoch_times(models, x, y, batch_size, repeats, baseline="plain", warmup=True):
    """One ``fit()`` epoch per model and round, `repeats` rounds after an untimed warm-up epoch.

    Returns ``{name: {"wall_s_median", "cpu_s_median", "wall_ratio", "cpu_ratio", "wall_s",
    "cpu_s"}}``, the ratios over `baseline`'s medians (wall time and process CPU time, the
    latter less sensitive to other processes on a shared machine).
    """
    import numpy as np

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
