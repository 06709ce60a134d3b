"""Holding a coefficient-domain mask through training, inside the compiled train step.

Keras 3 optimizers apply ``variable.constraint`` after every update, inside the (compiled) train
step. `CoefficientMaskConstraint` projects a kernel onto the span of its kept coefficients,
``W <- B^-1(M * B(W))``, with the mask ``M`` held in a non-trainable ``tf.Variable``: a schedule
changes the mask by assigning the variable, so nothing is retraced and no Python runs per batch.

`CompressionState` owns, for one model, the per-layer plans, transforms and masks. It is attached
to the model (``get_state(model)``), so several callbacks, a later ``fit()`` and
``save_compressed`` all see the same masks.

Only the layers' kernel *variables* (an ``Embedding``'s table) get the constraint: the layers'
``kernel_constraint`` attribute (and so the ``.keras`` config) is untouched, and a dense ``.keras``
file of a compressed model loads without any custom object.

Holding a mask means an exact, idempotent projection: every plan must be a square invertible
transform (identity, DCT, wavelets in ``"periodization"``, haar in any mode). Redundant plans
(wavelets longer than two taps in ``"zero"``, ``"symmetric"``, ... modes) are refused: their
``B^-1(M * B(W))`` is not a projection, the kernels drift off the mask at every step (relative
hold error 0.16-0.20 measured, against ~2e-7 for periodization), and they store more
coefficients than there are weights.

With ``basis="auto"`` the plans are chosen again at the first pruning (`prune`), on the weights of
that moment (the trained ones) and at the budget of the schedule.
"""

import dataclasses

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
    return bases.layers_by_key(model)


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
            raise ValueError(f"scope must be one of {selection.SCOPES}. Received: scope={scope!r}")
        self.model = model
        self.plans = {p.layer: p for p in plans}
        redundant = [p for p in plans if p.redundant]
        if redundant:
            p = redundant[0]
            raise ValueError(
                f"Layer '{p.layer}': {p.basis_name} in mode {p.mode!r} is a redundant transform "
                f"({p.n_coefficients} coefficients for {p.n_weights} weights) whose coefficient "
                "mask cannot be held exactly (its projection is not idempotent). Use "
                f"mode='periodization' (exact), or a 2-tap wavelet such as 'haar'. "
                f"Received: mode={p.mode!r}")
        self.transforms = {p.layer: bases.KernelTransform(p) for p in plans}
        by_name = _layers_by_name(model)
        missing = [n for n in self.plans if n not in by_name]
        if missing:
            raise ValueError(f"Plans name layers {missing} that the model does not have.")
        self.layers = {n: by_name[n] for n in self.plans}
        #: The compressed variable of each layer (``kernel``, or ``embeddings``).
        self.kernels = {n: bases.kernel_variable(l) for n, l in self.layers.items()}
        for n, p in self.plans.items():
            if self.kernels[n] is None:
                raise ValueError(f"Layer '{n}' has no kernel or embeddings to compress.")
            shape = tuple(int(s) for s in self.kernels[n].shape)
            if shape != tuple(p.kernel_shape):
                raise ValueError(f"Layer '{n}': kernel shape {shape} differs from the plan's "
                                 f"{tuple(p.kernel_shape)}.")
        #: Layers with weights that stay dense, and why (from `bases.plan_model`).
        self.dense_layers = list(getattr(plans, "dense_layers", []))
        self._auto = getattr(plans, "auto", None)
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
        self._follow_plans()

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
        return {n: np.asarray(t.forward(self.kernels[n].value)) for n, t in
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
        if self._auto is not None and self.keep_ratio is None and self.threshold is None:
            self._choose_auto(keep_ratio, threshold)
        masks = selection.select_masks(
            self.coefficients(), keep_ratio=keep_ratio, threshold=threshold,
            scope=scope or self.scope, keep_approximation=self.keep_approximation,
            approximation_masks=self.approximation_masks(),
        )
        self.set_masks(masks, project=True)
        self.keep_ratio = keep_ratio
        self.threshold = threshold
        return {n: int(m.sum()) for n, m in masks.items()}

    # -- basis="auto": the choice at the first pruning ------------------------
    def _choose_auto(self, keep_ratio, threshold):
        """Chooses the ``auto`` layers' plans on the current weights at the schedule's budget
        (or this pruning's), once; swaps the transforms in place (same coefficient counts)."""
        from dwt_keras.compression import auto

        record, self._auto = self._auto, None
        budget = record.keep_ratio
        if not record.explicit_budget:
            budget = keep_ratio if keep_ratio is not None else self._threshold_keep(threshold)
        fresh = auto.fingerprint({n: self.kernels[n] for n in record.settings})
        if (budget == record.keep_ratio and self.scope == record.scope
                and fresh == record.fingerprint):
            return  # planned on these very weights at this budget
        record = dataclasses.replace(record, keep_ratio=budget, scope=self.scope)
        fixed = {n: p for n, p in self.plans.items() if n not in record.settings}
        changed = False
        for n, plan in auto.plan_auto(self.model, record, fixed, warn=False).items():
            if plan.n_coefficients != self.plans[n].n_coefficients:
                raise AssertionError(f"auto plan of '{n}' changed its coefficient count")
            changed |= plan != self.plans[n]
            self.plans[n] = plan  # the new choice record, even if the plan is the same
            if plan != self.transforms[n].plan:
                self.transforms[n] = bases.KernelTransform(plan)
        if changed:
            self._follow_plans()
            if self.installed:
                for n, t in self.transforms.items():
                    c = self.kernels[n].constraint
                    if isinstance(c, CoefficientMaskConstraint) and c.transform is not t:
                        c.transform, c._compiled = t, None
                if getattr(self.model, "train_function", None) is not None:
                    self._retrace()

    def _threshold_keep(self, threshold):
        """Share of the weights with ``|w| >= threshold``: the budget that a threshold means."""
        w = np.concatenate([np.abs(np.asarray(self.kernels[n].numpy())).ravel()
                            for n in self.plans])
        return float(max(np.mean(w >= threshold), 1.0 / w.size))

    def _follow_plans(self):
        """Compressibility penalties on the kernels (`penalty.CompressibilityPenalty`) use the
        state's plans, so the penalty and the mask agree on the basis; a compiled train
        function is traced again if one changed."""
        changed = False
        for n, p in self.plans.items():
            follow = getattr(self.kernels[n].regularizer, "follow_plan", None)
            if follow is not None:
                changed |= bool(follow(p))
        if changed and getattr(self.model, "train_function", None) is not None:
            self._retrace()

    def _retrace(self):
        self.model.train_function = None
        if getattr(self.model, "compiled", False) and getattr(self.model, "optimizer", None):
            # inside fit() the loop calls model.train_function at the next step
            self.model.make_train_function(force=True)

    def project(self):
        """Applies ``W <- B^-1(M * B(W))`` to every compressed kernel now (eagerly)."""
        for n, t in self.transforms.items():
            k = self.kernels[n]
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
            k = self.kernels[n]
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
            w = np.asarray(self.kernels[n].numpy())
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
            k = self.kernels[n]
            if not isinstance(k.constraint, CoefficientMaskConstraint):
                self._previous_constraints[n] = k.constraint
            k.constraint = CoefficientMaskConstraint(t, self.masks[n])
        self.installed = True
        # A cached train function was traced without the constraints: force a retrace.
        self.model.train_function = None

    def uninstall(self):
        """Removes the mask constraints (restoring any earlier constraint)."""
        for n in self.transforms:
            self.kernels[n].constraint = self._previous_constraints.pop(n, None)
        self.installed = False
        self.model.train_function = None

    # -- statistics ----------------------------------------------------------
    def dead_units(self, tol=1e-6):
        """Output units whose whole coefficient group is (nearly) zero: removable neurons.

        A unit is dead when the norm of its kept coefficients is at most `tol` times the largest
        unit norm of its layer (a unit with no kept coefficient always is). Embedding tables have
        no output units and are left out.

        Args:
            tol: relative tolerance, >= 0.

        Returns:
            ``{layer: sorted list of unit indices}`` (empty lists included).
        """
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise ValueError(f"tol must be a number >= 0. Received: tol={tol!r}")
        masks, coeffs = self.mask_arrays(), self.coefficients()
        return {n: unit_norms_dead(np.where(masks[n], coeffs[n], 0.0), p, tol)
                for n, p in self.plans.items() if p.n_units is not None}

    def layer_stats(self):
        """Per-layer statistics for reports (plan, sizes, kept counts, sparsities, dead units,
        the ``auto`` choice)."""
        masks = self.mask_arrays()
        dead = self.dead_units()
        out = []
        for n, p in self.plans.items():
            w = np.asarray(self.kernels[n].numpy())
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
                "n_units": p.n_units,
                "dead_units": dead.get(n),
                "choice": p.choice,
            })
        return out

    def coefficient_sparsity(self):
        masks = self.mask_arrays()
        total = sum(m.size for m in masks.values())
        kept = sum(int(m.sum()) for m in masks.values())
        return 1.0 - kept / max(total, 1)

    def plan_dicts(self):
        """The per-layer plans, JSON-ready, with the basis by name (``basis_name``: ``"db2"``,
        ``"dct"``, ...) and the ``auto`` choice records (report ``plan[]``)."""
        return [{**p.to_dict(), "basis_name": p.basis_name} for p in self.plans.values()]

    def dense_layer_dicts(self):
        """Every layer with weights that stays dense, and why (for reports)."""
        return [dict(d) for d in self.dense_layers]


def unit_norms_dead(coefficients, plan, tol):
    """Sorted indices of `plan`'s output units whose coefficient-group norm is at most `tol`
    times the largest one (all units when every norm is 0)."""
    groups = np.asarray(coefficients, np.float64).reshape(-1, plan.n_units)
    norms = np.linalg.norm(groups, axis=0)
    return [int(j) for j in np.flatnonzero(norms <= tol * norms.max(initial=0.0))]


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
