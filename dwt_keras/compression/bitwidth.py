"""Per-layer k-means bit widths for the compressed file, chosen on a validation set.

`choose_bits` gives each compressed layer the fewest codebook bits whose rounding keeps the
validation metric within `tolerance` of the model with exact (float32) kept coefficients, first
layer by layer, then all together (raising the bits of the layer that costs most until the joint
model is within the tolerance too). Pass the result to ``save_compressed(..., bits=...)``: the
k-means codebooks are deterministic, so the file holds exactly the weights that were evaluated.
"""

import numpy as np

from dwt_keras.compression import coding, constraints


def _accuracy(model, x, y, batch_size):
    pred = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    labels = np.asarray(y)
    if labels.ndim == pred.ndim:  # one-hot
        labels = labels.argmax(-1)
    return float(np.mean(pred.argmax(-1) == labels.reshape(-1)))


def choose_bits(model, x, y, tolerance=0.001, candidates=range(1, 9), batch_size=512,
                metric=None, verbose=0):
    """Chooses ``{layer: bits}`` for ``save_compressed(model, path, bits=...)``.

    Args:
        model: a model with a `CompressionState` (compression callbacks, `compress_model` or
            `load_compressed`); its kernels are restored before returning.
        x, y: the validation split (never the test split). `y`: integer labels or one-hot.
        tolerance: the largest allowed drop of the metric, in its units (accuracy: 0.001 is
            0.1 points), against the model with exact kept coefficients.
        candidates: bit widths to try (each in [1, 8]), smallest first.
        batch_size: for ``model.predict``.
        metric: ``metric(model) -> float`` (higher is better) instead of the accuracy on
            ``(x, y)``.
        verbose: 1 prints each layer's figures.

    Returns:
        A dict: ``bits`` (``{layer: bits}``), ``reference`` (the metric with exact kept
        coefficients), ``metric`` (with the chosen bits), ``per_layer`` (``{layer: {bits:
        metric with only that layer rounded}}``).

    Example:

    >>> choice = choose_bits(model, x_val, y_val, tolerance=0.002)       # doctest: +SKIP
    >>> save_compressed(model, "m.dwtc", bits=choice["bits"])            # doctest: +SKIP
    """
    state = constraints.get_state(model)
    if state is None:
        raise ValueError("choose_bits needs a compressed model (compression callbacks, "
                         "compress_model or load_compressed); this one has no CompressionState.")
    candidates = sorted({int(b) for b in candidates})
    if not candidates or candidates[0] < 1 or candidates[-1] > 8:
        raise ValueError(f"candidates must be bit widths in [1, 8]. Received: "
                         f"candidates={candidates}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0. Received: tolerance={tolerance}")
    evaluate = metric or (lambda m: _accuracy(m, x, y, batch_size))

    originals = {n: np.array(k.numpy()) for n, k in state.kernels.items()}
    masks, coeffs = state.mask_arrays(), state.coefficients()
    kept = {n: np.asarray(coeffs[n], np.float32)[masks[n]] for n in masks}
    kernels = {}

    def kernel(name, bits):
        if (name, bits) not in kernels:
            if bits is None:
                values = kept[name]
            else:
                _, _, values = coding.quantize_values(kept[name], "kmeans", bits)
            c = np.zeros(state.plans[name].n_coefficients, np.float32)
            c[masks[name]] = values
            kernels[name, bits] = np.asarray(state.transforms[name].inverse(c))
        return kernels[name, bits]

    def use(choice):
        for n, b in choice.items():
            state.kernels[n].assign(kernel(n, b))
        return evaluate(model)

    try:
        exact = {n: None for n in state.plans}
        reference = use(exact)
        bits, per_layer = {}, {}
        for n in state.plans:
            per_layer[n] = {}
            for b in candidates:
                per_layer[n][b] = use({**exact, n: b})
                if reference - per_layer[n][b] <= tolerance:
                    break
            bits[n] = b
            if verbose:
                print(f"[choose_bits] {n}: {b} bits ({per_layer[n][b]:.4f} vs {reference:.4f})")
        joint = use(bits)
        while reference - joint > tolerance:
            raisable = [n for n in bits if bits[n] < candidates[-1]]
            if not raisable:
                break
            worst = min(raisable, key=lambda n: per_layer[n][bits[n]])
            bits[worst] = next(b for b in candidates if b > bits[worst])
            per_layer[worst][bits[worst]] = use({**exact, worst: bits[worst]})
            joint = use(bits)
    finally:
        for n, w in originals.items():
            state.kernels[n].assign(w)
    return {"bits": bits, "reference": reference, "metric": joint, "per_layer": per_layer}
