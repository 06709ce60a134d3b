"""Holding a coefficient-domain mask through training, inside the compiled train step.

Keras 3 optimizers apply ``variable.constraint`` after every update, inside the (compiled) train
step. `CoefficientMaskConstraint` projects a kernel onto the span of its kept coefficients,
``W <- B^-1(M * B(W))``, with the mask ``M`` held in a non-trainable ``tf.Variable``: a schedule
changes the mask by assigning the variable, so nothing is retraced and no Python runs per batch.

`CompressionState` owns, for one model, the per-layer plans, transforms and masks. It is attached
to the model (``get_state(model)``), so several callbacks, a later ``fit()`` and
``save_compressed`` all see the same masks.

Only the layers' kernel *variables* get the constraint: the layers' ``kernel_constraint``
attribute (and so the ``.keras`` config) is untouched, and a dense ``.keras`` file of a compressed
model loads without any custom object.
"""

import numpy as np

from dwt_keras.compression import bases, selection

_STATE_ATTR = "_dwt_compression_state"
#: Default of `CoefficientMaskConstraint(jit=...)`.
JIT_PROJECTION = True


class CoefficientMaskConstraint:
    """``W -> B^-1(M * B(W))`` for one kernel (callable; used as ``variable.constraint``).

    Args:
        transform: a `bases.KernelTransform`.
        mask: a float ``tf.Variable`` of shape ``(n_coefficients,)`` with 0/1 entries.
        jit: run the projection as one XLA-compiled function (fused: the transform's many small
            ops would otherwise each cost a kernel launch per step). Default: `JIT_PROJECTION`.

    Example:

    >>> state = CompressionState.create(model, plans)     # doctest: +SKIP
    >>> state.install()   # sets kernel.constraint = CoefficientMaskConstraint(...)  # doctest: +SKIP
    """

    def __init__(self, transform, mask, jit=None):
        self.transform = transform
        self.mask = mask
        self.jit = JIT_PROJECTION if jit is None else bool(jit)
        self._compiled = None

    def project(self, w):
        import tensorflow as tf

        w = tf.convert_to_tensor(w)
        c = self.transform.forward(w)
        m = tf.cast(tf.convert_to_tensor(self.mask), c.dtype)
        return tf.cast(self.transform.inverse(c * m), w.dtype)

    def __call__(self, w):
        import tensorflow as tf

        if not self.jit or self.transform.plan.basis == "identity":
            return self.project(w)
        if self._compiled is None:
            self._compiled = tf.function(self.project, jit_compile=True, autograph=False)
        return self._compiled(tf.convert_to_tensor(w))

    def get_config(self):
        # The mask lives in the compression state, not in the model config.
        return {"layer": self.transform.plan.layer}

    def __deepcopy__(self, memo):
        # Variables belong to the model's state; a copy shares them (copying a callback or a
        # model config must not duplicate device variables).
        return self


def _layers_by_name(model):
    return {l.name: l for l in bases._flatten_layers(model)}


def check_finite_weights(model):
    """Raises ``ValueError`` naming the first layer that holds NaN or Inf weights."""
    for layer in bases._flatten_layers(model):
        for w in layer.weights:
            value = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                bad = int(np.sum(~np.isfinite(value)))
                raise ValueError(
                    f"Layer '{layer.name}' has {bad} NaN/Inf value(s) in weight '{w.path if hasattr(w, 'path') else w.name}'; "
                    "cannot compress a diverged model (lower the learning rate or check the data)."
                )


class CompressionState:
    """Plans, transforms and masks of one model's compressed kernels.

    Args:
        model: a built Keras model.
        plans: a list of `bases.LayerPlan` (see `bases.plan_model`).
        scope: ``"global"`` or ``"per_layer"`` ranking of coefficients.
        keep_approximation: always keep the coarsest approximation band.

    Use `CompressionState.create(model, plans, ...)` (or `get_state(model)`), then `prune()`;
    `install()` attaches the constraints so that training holds the masks.
    """

    def __init__(self, model, plans, scope="global", keep_approximation=False):
        import tensorflow as tf

        if scope not in selection.SCOPES:
            raise ValueError(f"Unknown scope {scope!r}; valid: {selection.SCOPES}.")
        self.model = model
        self.plans = {p.layer: p for p in plans}
        self.transforms = {p.layer: bases.KernelTransform(p) for p in plans}
        by_name = _layers_by_name(model)
        missing = [n for n in self.plans if n not in by_name]
        if missing:
            raise ValueError(f"Plans name layers {missing} that the model does not have.")
        self.layers = {n: by_name[n] for n in self.plans}
        for n, p in self.plans.items():
            shape = tuple(int(s) for s in self.layers[n].kernel.shape)
            if shape != tuple(p.kernel_shape):
                raise ValueError(f"Layer '{n}': kernel shape {shape} differs from the plan's "
                                 f"{tuple(p.kernel_shape)}.")
        self.scope = scope
        self.keep_approximation = bool(keep_approximation)
        self.keep_ratio = None  # current keep ratio (None: nothing pruned yet)
        self.threshold = None
        self.installed = False
        self._previous_constraints = {}
        strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
        with strategy.scope():
            self.masks = {
                n: tf.Variable(np.ones(p.n_coefficients, np.float32), trainable=False,
                               name=f"dwt_mask_{n}")
                for n, p in self.plans.items()
            }

    # -- construction / lookup ---------------------------------------------
    @classmethod
    def create(cls, model, plans, scope="global", keep_approximation=False, attach=True):
        state = cls(model, plans, scope=scope, keep_approximation=keep_approximation)
        if attach:
            object.__setattr__(model, _STATE_ATTR, state)
        return state

    # -- coefficients and masks --------------------------------------------
    def coefficients(self):
        """``{layer: flat NumPy coefficients}`` of the current kernels."""
        return {n: np.asarray(t.forward(self.layers[n].kernel.value)) for n, t in
                self.transforms.items()}

    def mask_arrays(self):
        return {n: np.asarray(m.numpy()) > 0.5 for n, m in self.masks.items()}

    def approximation_masks(self):
        return {n: t.approximation_mask() for n, t in self.transforms.items()}

    def set_masks(self, masks, project=True):
        """Assigns boolean masks ``{layer: array}`` and (by default) projects the kernels."""
        for n, m in masks.items():
            m = np.asarray(m, dtype=bool).reshape(-1)
            if m.size != self.plans[n].n_coefficients:
                raise ValueError(f"Layer '{n}': mask of {m.size} entries, expected "
                                 f"{self.plans[n].n_coefficients}.")
            self.masks[n].assign(m.astype(np.float32))
        if project:
            self.project()

    def prune(self, keep_ratio=None, threshold=None, scope=None):
        """Selects masks from the current kernels and projects the kernels onto them.

        Args:
            keep_ratio: share of coefficients kept (float in (0, 1], or ``{layer: float}``).
            threshold: instead, keep coefficients with ``|c| >= threshold``.
            scope: overrides the state's ranking scope.

        Returns:
            ``{layer: kept count}``.
        """
        check_finite_weights(self.model)
        masks = selection.select_masks(
            self.coefficients(), keep_ratio=keep_ratio, threshold=threshold,
            scope=scope or self.scope, keep_approximation=self.keep_approximation,
            approximation_masks=self.approximation_masks(),
        )
        self.set_masks(masks, project=True)
        self.keep_ratio = keep_ratio
        self.threshold = threshold
        return {n: int(m.sum()) for n, m in masks.items()}

    def project(self):
        """Applies ``W <- B^-1(M * B(W))`` to every compressed kernel now (eagerly)."""
        for n, t in self.transforms.items():
            k = self.layers[n].kernel
            c = t.forward(k.value)
            m = np.asarray(self.masks[n].numpy()).astype(c.dtype.as_numpy_dtype)
            k.assign(t.inverse(c * m))

    def snap(self):
        """Sets each kernel to the reconstruction of its kept coefficients and returns them.

        Returns:
            ``{layer: (mask bool array, kept coefficient values float32)}``; afterwards each
            kernel equals ``inverse(coefficients)`` computed eagerly, bit for bit, which is what
            `storage.load_compressed` computes.
        """
        out = {}
        masks = self.mask_arrays()
        for n, t in self.transforms.items():
            k = self.layers[n].kernel
            c = np.asarray(t.forward(k.value)).astype(np.float32)
            c = np.where(masks[n], c, np.float32(0))
            k.assign(np.asarray(t.inverse(c)))
            out[n] = (masks[n], c[masks[n]])
        return out

    def max_hold_error(self):
        """Max over layers of ``|W - B^-1(M * B(W))| / max|W|`` and of the relative energy
        outside the mask (both ~1e-7 when the mask holds)."""
        err, outside = 0.0, 0.0
        for n, t in self.transforms.items():
            w = np.asarray(self.layers[n].kernel.numpy())
            c = np.asarray(t.forward(w))
            m = np.asarray(self.masks[n].numpy())
            w2 = np.asarray(t.inverse((c * m).astype(c.dtype)))
            scale = max(float(np.abs(w).max()), 1e-30)
            err = max(err, float(np.abs(w - w2).max()) / scale)
            outside = max(outside, float(np.abs(c * (1 - m)).max()) / scale)
        return {"projection_error": err, "outside_mask_max": outside}

    # -- constraints ---------------------------------------------------------
    def install(self):
        """Attaches the mask constraints to the kernels (takes effect at the next trace)."""
        for n, t in self.transforms.items():
            k = self.layers[n].kernel
            if not isinstance(k.constraint, CoefficientMaskConstraint):
                self._previous_constraints[n] = k.constraint
            k.constraint = CoefficientMaskConstraint(t, self.masks[n])
        self.installed = True
        # A cached train function was traced without the constraints: force a retrace.
        self.model.train_function = None

    def uninstall(self):
        """Removes the mask constraints (restoring any earlier constraint)."""
        for n in self.transforms:
            self.layers[n].kernel.constraint = self._previous_constraints.pop(n, None)
        self.installed = False
        self.model.train_function = None

    # -- statistics ----------------------------------------------------------
    def layer_stats(self):
        """Per-layer statistics for reports (plan, sizes, kept counts, sparsities)."""
        masks = self.mask_arrays()
        out = []
        for n, p in self.plans.items():
            w = np.asarray(self.layers[n].kernel.numpy())
            kept = int(masks[n].sum())
            out.append({
                "name": n,
                "class": p.layer_class,
                "kernel_shape": list(p.kernel_shape),
                "basis": p.basis_name,
                "mode": p.mode,
                "level": p.level,
                "view": p.view,
                "axes": p.axes,
                "fallback": p.fallback,
                "redundant": p.redundant,
                "n_weights": p.n_weights,
                "n_coefficients": p.n_coefficients,
                "kept_coefficients": kept,
                "keep_ratio": kept / p.n_coefficients,
                "coefficient_sparsity": 1.0 - kept / p.n_coefficients,
                "weight_zero_fraction": float(np.mean(w == 0)),
            })
        return out

    def coefficient_sparsity(self):
        masks = self.mask_arrays()
        total = sum(m.size for m in masks.values())
        kept = sum(int(m.sum()) for m in masks.values())
        return 1.0 - kept / max(total, 1)

    def plan_dicts(self):
        return [p.to_dict() for p in self.plans.values()]


def get_state(model):
    """The `CompressionState` attached to `model`, or None."""
    return getattr(model, _STATE_ATTR, None)


def detach_state(model):
    state = get_state(model)
    if state is not None:
        if state.installed:
            state.uninstall()
        object.__delattr__(model, _STATE_ATTR)
    return state
