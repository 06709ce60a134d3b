"""Which coefficients to keep: a keep ratio (global or per layer) or an absolute threshold.

Coefficients are ranked by magnitude. With orthonormal bases (identity, DCT, orthogonal wavelets
in periodization mode) the magnitudes are on the weights' scale, so a global ranking across
layers compares like with like; the dropped energy then equals the squared L2 error of pruning.
"""

import math
import numbers

import numpy as np

SCOPES = ("global", "per_layer")


def validate_keep_ratio(keep_ratio, name="keep_ratio"):
    """Checks a keep ratio in (0, 1] (a float, or a dict of per-layer floats)."""
    if isinstance(keep_ratio, dict):
        for k, v in keep_ratio.items():
            validate_keep_ratio(v, f"{name}[{k!r}]")
        return keep_ratio
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, numbers.Real):
        raise ValueError(f"{name} must be a number in (0, 1], got {keep_ratio!r}.")
    if not (0.0 < float(keep_ratio) <= 1.0) or math.isnan(float(keep_ratio)):
        raise ValueError(
            f"{name} must be in (0, 1] (the share of coefficients kept), got {keep_ratio}."
        )
    return float(keep_ratio)


def validate_threshold(threshold):
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not (
        float(threshold) >= 0.0 and math.isfinite(float(threshold))
    ):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}.")
    return float(threshold)


def budget(keep_ratio, n):
    """Number of coefficients kept out of `n`: ``ceil(keep_ratio * n)`` (robust to float
    round-off, e.g. ``0.1 * 1200``), at least 1."""
    return int(max(1, min(n, math.ceil(float(keep_ratio) * n - 1e-9))))


def _top_k_mask(magnitudes, k):
    """Boolean mask of exactly `k` largest entries (ties broken by position, deterministically)."""
    n = magnitudes.size
    k = int(min(max(k, 0), n))
    mask = np.zeros(n, dtype=bool)
    if k == 0:
        return mask
    if k == n:
        mask[:] = True
        return mask
    # stable sort: equal magnitudes keep the lower index first
    order = np.argsort(-magnitudes, kind="stable")
    mask[order[:k]] = True
    return mask


def select_masks(coefficients, keep_ratio=None, threshold=None, scope="global",
                 keep_approximation=False, approximation_masks=None):
    """Chooses the kept coefficients of every layer.

    Args:
        coefficients: ``{layer_name: flat NumPy array}``.
        keep_ratio: share of coefficients kept, in (0, 1]: a float, or ``{layer: float}``
            (then the scope is per layer and unlisted layers keep everything).
        threshold: instead of a ratio, keep ``|c| >= threshold``.
        scope: ``"global"`` (one ranking over all layers) or ``"per_layer"``.
        keep_approximation: always keep the coarsest approximation band (it counts towards the
            budget: the rest of the budget goes to the largest other coefficients).
        approximation_masks: ``{layer_name: bool array}`` marking approximation coefficients.

    Returns:
        ``{layer_name: bool array}``; at least one coefficient per layer is kept.

    Example:

    >>> import numpy as np
    >>> m = select_masks({"a": np.array([3., -1., 0.5, 2.])}, keep_ratio=0.5)
    >>> m["a"].tolist()
    [True, False, False, True]
    """
    if (keep_ratio is None) == (threshold is None):
        raise ValueError("Pass exactly one of keep_ratio or threshold.")
    if scope not in SCOPES:
        raise ValueError(f"Unknown scope {scope!r}; valid: {SCOPES}.")
    names = list(coefficients)
    if not names:
        return {}
    mags = {}
    for n in names:
        c = np.asarray(coefficients[n], dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(c)):
            raise ValueError(f"Layer '{n}': its coefficients contain NaN or Inf.")
        m = np.abs(c)
        if keep_approximation and approximation_masks is not None and n in approximation_masks:
            m = m.copy()
            m[np.asarray(approximation_masks[n], dtype=bool)] = np.inf
        mags[n] = m

    if threshold is not None:
        t = validate_threshold(threshold)
        out = {}
        for n in names:
            mask = mags[n] >= t
            if not mask.any():  # never drop a whole kernel
                mask[np.argmax(mags[n])] = True
            out[n] = mask
        return out

    if isinstance(keep_ratio, dict):
        validate_keep_ratio(keep_ratio)
        unknown = sorted(set(keep_ratio) - set(names))
        if unknown:
            raise ValueError(f"keep_ratio names unknown/uncompressed layer(s) {unknown}; "
                             f"compressed layers: {names}.")
        return {n: _top_k_mask(mags[n], budget(keep_ratio.get(n, 1.0), mags[n].size))
                for n in names}

    ratio = validate_keep_ratio(keep_ratio)
    if scope == "per_layer":
        return {n: _top_k_mask(mags[n], budget(ratio, mags[n].size)) for n in names}
    allm = np.concatenate([mags[n] for n in names])
    total = allm.size
    keep = _top_k_mask(allm, max(len(names), budget(ratio, total)))
    out, start = {}, 0
    for n in names:
        size = mags[n].size
        mask = keep[start:start + size].copy()
        if not mask.any():
            mask[np.argmax(mags[n])] = True
        out[n] = mask
        start += size
    return out


def polynomial_keep(step, initial_keep, final_keep, begin_step, end_step, power=3.0):
    """Keep ratio of a polynomial-decay sparsity schedule (as the TF Model Optimization
    Toolkit's ``PolynomialDecay``): sparsity goes from ``1 - initial_keep`` at ``begin_step`` to
    ``1 - final_keep`` at ``end_step`` as ``s_f + (s_i - s_f) * (1 - progress) ** power``.
    """
    s_i, s_f = 1.0 - initial_keep, 1.0 - final_keep
    if end_step <= begin_step:
        progress = 1.0 if step >= begin_step else 0.0
    else:
        progress = min(max((step - begin_step) / (end_step - begin_step), 0.0), 1.0)
    return 1.0 - (s_f + (s_i - s_f) * (1.0 - progress) ** power)
