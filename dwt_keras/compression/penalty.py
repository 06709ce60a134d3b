"""Compressibility training: a penalty that makes kernels sparse in their compression basis.

`CompressibilityPenalty` is a Keras regularizer of one kernel that transforms it with the layer's
plan (`bases.KernelTransform.forward`, differentiable TensorFlow) and penalises the coefficients
``c``:

* ``l1 * sum(|c|)`` — sparsity in the basis (the coefficients that pruning would drop are pushed
  to zero during training, so pruning them costs less);
* ``log_sum * sum(log(1 + |c| / log_sum_epsilon))`` — a closer surrogate of the number of
  non-zero coefficients (Candes, Wakin & Boyd 2008), strong on small coefficients and nearly flat
  on large ones;
* ``group * sum_j ||c_j||_2`` — group lasso over output units: ``c_j`` is unit ``j``'s whole
  coefficient vector, so entire neurons (filters) go to zero and can be removed
  (`dead_units`; structured sparsity as in Bayesian Compression, Louizos et al. 2017).

`add_compressibility_penalty` attaches one penalty per compressed kernel as the kernel
*variable's* regularizer: it is then in ``model.losses`` and in the loss that ``fit()``
minimises, while the layers' configs (and so ``.keras`` files and the compressed file's
architecture) are untouched. A model's `constraints.CompressionState`, when one is created later
(a compression callback, ``basis="auto"``), moves the penalties onto its own plans, so penalty
and mask always agree on the basis.
"""

import math
import numbers

import keras
import numpy as np

from dwt_keras.compression import bases, constraints

PENALTY_TERMS = ("l1", "log_sum", "group")


def _strength(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(float(value)) and float(value) >= 0):
        raise ValueError(f"{name} must be a finite number >= 0. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="dwt_keras")
class CompressibilityPenalty(keras.regularizers.Regularizer):
    """L1 / log-sum / group-lasso penalty on a kernel's coefficients in its plan's basis.

    Args:
        plan: the kernel's `bases.LayerPlan` (or its ``to_dict()``).
        l1: strength of ``sum(|c|)``.
        log_sum: strength of ``sum(log(1 + |c| / log_sum_epsilon))``.
        group: strength of ``sum_j ||c_j||_2`` over output units ``j``.
        log_sum_epsilon: scale of the log-sum penalty (about the magnitude below which a
            coefficient counts as zero).
        previous: a regularizer the variable already had (its loss is added).

    Example:

    >>> import keras
    >>> from dwt_keras.compression.bases import plan_layer
    >>> layer = keras.layers.Dense(4)
    >>> layer.build((None, 16))
    >>> pen = CompressibilityPenalty(plan_layer(layer, "haar"), l1=1e-4, group=1e-3)
    >>> float(pen(layer.kernel)) > 0
    True
    """

    def __init__(self, plan, l1=0.0, log_sum=0.0, group=0.0, log_sum_epsilon=1e-3,
                 previous=None):
        if isinstance(plan, dict):
            plan = bases.LayerPlan.from_dict(plan)
        if not isinstance(plan, bases.LayerPlan):
            raise ValueError("plan must be a LayerPlan or its dict. "
                             f"Received: plan={type(plan).__name__}")
        self.l1 = _strength(l1, "l1")
        self.log_sum = _strength(log_sum, "log_sum")
        self.group = _strength(group, "group")
        if not (self.l1 or self.log_sum or self.group):
            raise ValueError("Give at least one of l1, log_sum, group > 0. "
                             f"Received: l1={l1!r}, log_sum={log_sum!r}, group={group!r}")
        self.log_sum_epsilon = _strength(log_sum_epsilon, "log_sum_epsilon")
        if not self.log_sum_epsilon > 0:
            raise ValueError(f"log_sum_epsilon must be > 0. "
                             f"Received: log_sum_epsilon={log_sum_epsilon!r}")
        if self.group and plan.n_units is None:
            raise ValueError(f"Layer '{plan.layer}' ({plan.layer_class}) has no output units for "
                             f"the group penalty. Received: group={group!r}")
        if isinstance(previous, dict):
            previous = keras.regularizers.deserialize(previous)
        self.previous = previous
        self.plan = None
        self.follow_plan(plan)

    def follow_plan(self, plan):
        """Uses `plan`'s transform from now on (the kernel shape must not change).

        Returns:
            True if the transform changed (a traced train step must be traced again).
        """
        if self.plan is not None and tuple(plan.kernel_shape) != tuple(self.plan.kernel_shape):
            raise ValueError(f"Layer '{plan.layer}': plan for kernel {plan.kernel_shape}, penalty "
                             f"built for {self.plan.kernel_shape}.")
        if plan == self.plan:
            return False
        self.plan = plan
        self._transform = bases.KernelTransform(plan)
        return True

    def coefficients(self, x):
        import tensorflow as tf

        return self._transform.forward(tf.cast(x, tf.float32))

    def __call__(self, x):
        import tensorflow as tf

        c = self.coefficients(x)
        total = tf.constant(0.0, tf.float32)
        if self.l1:
            total += self.l1 * tf.reduce_sum(tf.abs(c))
        if self.log_sum:
            total += self.log_sum * tf.reduce_sum(tf.math.log1p(tf.abs(c) / self.log_sum_epsilon))
        if self.group:
            groups = tf.reshape(c, (-1, self.plan.n_units))
            # the tiny offset keeps the gradient finite (zero) at a dead unit
            norms = tf.sqrt(tf.reduce_sum(tf.square(groups), axis=0) + 1e-16)
            total += self.group * tf.reduce_sum(norms)
        if self.previous is not None:
            total += tf.cast(self.previous(x), tf.float32)
        return total

    def get_config(self):
        return {"plan": self.plan.transform_dict(), "l1": self.l1, "log_sum": self.log_sum,
                "group": self.group, "log_sum_epsilon": self.log_sum_epsilon,
                "previous": None if self.previous is None
                else keras.regularizers.serialize(self.previous)}


def add_compressibility_penalty(model, basis="haar", l1=0.0, log_sum=0.0, group=0.0,
                                log_sum_epsilon=1e-3, plans=None, **plan_kwargs):
    """Attaches a `CompressibilityPenalty` to every compressed kernel of `model`.

    The plans come from, in this order: `plans`; the model's `constraints.CompressionState`
    (so the penalty follows a compression already under way); `bases.plan_model(model, basis,
    **plan_kwargs)`. For dense training from scratch give a fixed basis: ``"auto"`` chooses on
    the current weights (use it after dense training, for retraining). Call it before
    ``compile()``/``fit()``; a compiled train step is traced again.

    Args:
        model: a built Keras model.
        basis: the basis to plan with when the model has no compression state.
        l1, log_sum, group, log_sum_epsilon: see `CompressibilityPenalty` (strengths >= 0, at
            least one > 0). ``group`` is skipped for embedding tables.
        plans: explicit `bases.LayerPlan` list.
        **plan_kwargs: passed to `bases.plan_model` (``min_kernel_size``, ``layers``,
            ``exclude``, ``layer_overrides``, ``mode``, ``level``, ``small_kernel_fallback``...).

    Returns:
        ``{layer name: CompressibilityPenalty}``.

    Example:

    >>> pens = add_compressibility_penalty(model, basis="dct", l1=1e-5, group=1e-4)  # doctest: +SKIP
    >>> model.compile(...); model.fit(...)   # the penalty is part of the training loss  # doctest: +SKIP
    """
    for name, value in (("l1", l1), ("log_sum", log_sum), ("group", group)):
        _strength(value, name)
    if not (l1 or log_sum or group):
        raise ValueError("Give at least one of l1, log_sum, group > 0. "
                         f"Received: l1={l1!r}, log_sum={log_sum!r}, group={group!r}")
    state = constraints.get_state(model)
    if plans is None:
        plans = (list(state.plans.values()) if state is not None
                 else bases.plan_model(model, basis, **plan_kwargs))
    if not plans:
        raise ValueError(f"Model '{model.name}' has no kernel to penalise (see plan_model's "
                         "min_kernel_size / layers).")
    by_name = bases.layers_by_key(model)
    out = {}
    for plan in plans:
        if plan.layer not in by_name:
            raise ValueError(f"Plan names layer '{plan.layer}' that the model does not have.")
        var = bases.kernel_variable(by_name[plan.layer])
        previous = var.regularizer
        if isinstance(previous, CompressibilityPenalty):
            previous = previous.previous  # replace our own, keep the user's
        layer_group = group if plan.n_units is not None else 0.0  # embeddings: no units
        if not (l1 or log_sum or layer_group):
            continue
        var.regularizer = out[plan.layer] = CompressibilityPenalty(
            plan, l1=l1, log_sum=log_sum, group=layer_group, log_sum_epsilon=log_sum_epsilon,
            previous=previous)
    model.train_function = None  # traced again with the penalty at the next fit()
    return out


def remove_compressibility_penalty(model):
    """Removes the penalties of `add_compressibility_penalty` (restoring earlier regularizers).

    Returns:
        The names of the layers whose penalty was removed.
    """
    removed = []
    for key, layer in bases.named_layers(model):
        var = bases.kernel_variable(layer)
        if var is not None and isinstance(var.regularizer, CompressibilityPenalty):
            var.regularizer = var.regularizer.previous
            removed.append(key)
    model.train_function = None
    return removed


def dead_units(model, tol=1e-6, plans=None):
    """Output units whose whole coefficient group is (nearly) zero, per layer.

    With a compression state, the kept coefficients count (`CompressionState.dead_units`);
    otherwise the plans of the attached penalties (or `plans`) and the current kernels.

    Args:
        model: the model.
        tol: a unit is dead when its coefficient norm is at most `tol` times the largest unit
            norm of its layer.
        plans: explicit `bases.LayerPlan` list (for a model without state or penalties).

    Returns:
        ``{layer: sorted list of unit indices}``: units that can be removed from the runtime
        model (with the matching inputs of the next layer).
    """
    state = constraints.get_state(model)
    if state is not None and plans is None:
        return state.dead_units(tol)
    _strength(tol, "tol")
    by_name = bases.layers_by_key(model)
    if plans is None:
        regs = [getattr(bases.kernel_variable(l), "regularizer", None) for l in by_name.values()]
        plans = [r.plan for r in regs if isinstance(r, CompressibilityPenalty)]
    if not plans:
        raise ValueError("dead_units needs a compression state, attached penalties or plans=.")
    out = {}
    for p in plans:
        if p.n_units is None:
            continue
        kernel = np.asarray(bases.kernel_variable(by_name[p.layer]).numpy())
        coeffs = np.asarray(bases.KernelTransform(p).forward(kernel))
        out[p.layer] = constraints.unit_norms_dead(coeffs, p, tol)
    return out
