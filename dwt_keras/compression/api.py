"""`compress_model`: one-shot compression of a trained model, without a callback."""

from dwt_keras.compression import bases, constraints


def compress_model(model, keep_ratio=None, threshold=None, basis="haar", mode="periodization",
                   level=None, scope="global", keep_approximation=False, min_kernel_size=256,
                   layers=None, exclude=(), layer_overrides=None,
                   small_kernel_fallback=bases.DEFAULT_FALLBACK, install=True, verbose=0):
    """Plans, prunes and (optionally) installs the mask constraints on `model`, in place.

    Args:
        model: a built Keras model.
        keep_ratio: share of coefficients kept, in (0, 1] (or ``{layer: ratio}``).
        threshold: instead, keep coefficients with ``|c| >= threshold``.
        basis, mode, level, scope, keep_approximation, min_kernel_size, layers, exclude,
            layer_overrides, small_kernel_fallback: see `bases.plan_model` and
            `constraints.CompressionState`.
        install: attach the constraints so that a following ``fit()`` holds the masks.
        verbose: print the plan.

    Returns:
        The model's `CompressionState`.

    Example:

    >>> state = compress_model(model, keep_ratio=0.05, basis="db4")   # doctest: +SKIP
    >>> model.fit(x, y, epochs=2)   # retrains with the masks held       # doctest: +SKIP
    """
    state = constraints.get_state(model)
    if state is None:
        bases.check_exact_mode(basis, mode)
        plans = bases.plan_model(model, basis, mode=mode, level=level,
                                 min_kernel_size=min_kernel_size, layers=layers, exclude=exclude,
                                 layer_overrides=layer_overrides,
                                 small_kernel_fallback=small_kernel_fallback, scope=scope,
                                 auto_keep_ratio=keep_ratio)
        if not plans:
            raise ValueError(f"No kernel of at least {min_kernel_size} weights to compress.")
        if verbose:
            print(bases.format_plan(plans))
        state = constraints.CompressionState.create(model, plans, scope=scope,
                                                    keep_approximation=keep_approximation)
    state.prune(keep_ratio=keep_ratio, threshold=threshold)
    if install:
        state.install()
    return state
