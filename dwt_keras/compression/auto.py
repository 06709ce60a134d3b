"""``basis="auto"``: each layer's basis and view, chosen on its trained weights at its budget.

Every candidate of a layer (`bases.candidate_plans`: identity, the DCT and orthogonal wavelets at
every exact level, over every view that does not cross channels) is an orthonormal transform of
the kernel, so the energy of the coefficients kept is the energy of the weights kept, and the
dropped energy is the squared L2 error of pruning. The choice is therefore made in the units the
ranking of `selection.select_masks` uses:

* ``scope="per_layer"`` (or a ``{layer: ratio}`` keep ratio): each layer keeps
  ``ceil(ratio * n)`` coefficients; the candidate that keeps the most energy with that many wins.
* ``scope="global"``: one ranking over all layers keeps the ``K`` largest coefficients, so a
  layer's budget depends on the others' bases. The choice maximises the total energy kept: a
  Lagrangian pass (each layer takes the candidate maximising ``sum(max(c^2 - lam, 0))``, with
  ``lam`` bisected until ``K`` coefficients pass) followed by exchange rounds (each layer takes
  its best candidate at its current allocation; the global top-K can only gain), guarded by
  the identity-everywhere plan.

Identity is always a candidate, so the energy kept is never below magnitude pruning's at the
same keep ratio. With ``criterion="loss"`` the layers' budgets are those of the energy choice,
and each layer takes the candidate whose pruning (that layer alone, at its budget) raises the
loss on the validation batch the least.

Each chosen `bases.LayerPlan` records in ``choice`` the criterion, the budget and every
candidate's figures; `CompressionState` chooses again at its first pruning, on the weights and at
the keep ratio of that moment (see `AutoRecord`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dwt_keras.compression import bases, selection

#: Exchange rounds after the Lagrangian pass (they stop as soon as no layer changes).
EXCHANGE_ROUNDS = 6


@dataclasses.dataclass
class AutoRecord:
    """What a compression state needs to choose the ``auto`` layers again.

    Attributes:
        spec: the `bases.AutoBasis`.
        settings: ``{layer: plan_layer keyword arguments}`` of the auto layers.
        keep_ratio: the budget of the last choice (float or ``{layer: float}``).
        explicit_budget: True if the budget was given (an `AutoBasis` keep ratio or a schedule's
            final keep ratio); otherwise the first pruning's keep ratio replaces it.
        scope: ``"global"`` or ``"per_layer"``.
        fingerprint: ``{layer: (sum, sum of squares)}`` of the kernels at the last choice.
    """

    spec: bases.AutoBasis
    settings: dict
    keep_ratio: object
    explicit_budget: bool
    scope: str = "global"
    fingerprint: dict = dataclasses.field(default_factory=dict)


def _numpy(kernel):
    return np.asarray(kernel.numpy() if hasattr(kernel, "numpy") else kernel)


def fingerprint(kernels):
    out = {}
    for n, k in kernels.items():
        w = _numpy(k).astype(np.float64)
        out[n] = (float(w.sum()), float(np.square(w).sum()))
    return out


def plan_auto(model, record, fixed_plans, warn=True):
    """Chooses the plans of `record`'s layers on `model`'s current weights.

    Args:
        model: the model.
        record: an `AutoRecord`; its ``fingerprint`` is updated.
        fixed_plans: ``{layer: LayerPlan}`` of the other compressed layers (they take part in a
            global ranking).
        warn: warn when a layer's input geometry cannot be detected.

    Returns:
        ``{layer: LayerPlan}`` for the auto layers, each with its ``choice``.
    """
    cands, kernels = {}, {}
    names = set(record.settings) | set(fixed_plans)
    for key, l in bases.named_layers(model):
        if key not in names:
            continue
        kernels[key] = bases.kernel_variable(l)
        if key in fixed_plans:
            cands[key] = [fixed_plans[key]]
        else:
            s = dict(record.settings[key])
            s.pop("basis")
            cands[key] = bases.candidate_plans(l, record.spec.candidates(), warn=warn,
                                               name=key, **s)
    chosen = choose_plans(cands, kernels, record.keep_ratio, record.scope, record.spec,
                          model=model)
    record.fingerprint = fingerprint({n: kernels[n] for n in record.settings})
    return {n: chosen[n] for n in record.settings}


class NumpyTransform:
    """A plan's transform in float64 NumPy (PyWavelets / SciPy), for scoring candidates.

    The order of the coefficients differs from `bases.KernelTransform`'s flat vector (which the
    masks and files use), but the set of coefficients is the same: energies, top-k and the
    reconstruction of a top-k agree, and scoring needs no TensorFlow graph per candidate.
    Redundant plans work too (their coefficient array is larger than the kernel).
    """

    def __init__(self, plan):
        self.plan = plan
        self._slices = self._shape = None

    def forward(self, w):
        import pywt
        import scipy.fft

        p = self.plan
        if p.basis == "identity":
            return np.asarray(w, np.float64).ravel()
        x = np.asarray(w, np.float64).reshape(p.pre_shape)
        x = (x.transpose(p.perm) if p.perm is not None else x).reshape(p.x_shape)
        if p.basis == "dct":
            return scipy.fft.dctn(x, type=2, norm="ortho", axes=p.transform_axes).ravel()
        coeffs = pywt.wavedecn(x, p.wavelet, mode=p.mode, level=p.level, axes=p.transform_axes)
        arr, self._slices = pywt.coeffs_to_array(coeffs, axes=p.transform_axes)
        self._shape = arr.shape
        return arr.ravel()

    def inverse(self, flat):
        import pywt
        import scipy.fft

        p = self.plan
        if p.basis == "identity":
            return np.reshape(flat, p.kernel_shape)
        if p.basis == "dct":
            x = scipy.fft.idctn(np.reshape(flat, p.x_shape), type=2, norm="ortho",
                                axes=p.transform_axes)
        else:
            coeffs = pywt.array_to_coeffs(np.reshape(flat, self._shape), self._slices,
                                          output_format="wavedecn")
            x = pywt.waverecn(coeffs, p.wavelet, mode=p.mode, axes=p.transform_axes)
            x = x[tuple(slice(0, n) for n in p.x_shape)]  # odd lengths come back longer
        if p.perm is not None:
            x = x.reshape(tuple(p.pre_shape[i] for i in p.perm)).transpose(np.argsort(p.perm))
        return x.reshape(p.kernel_shape)


class _Scores:
    """Sorted squared coefficients of one candidate: energy kept for any number kept."""

    def __init__(self, plan, kernel):
        self.transform = NumpyTransform(plan)
        c = self.transform.forward(_numpy(kernel))
        self.coefficients = c
        self.sq = np.sort(np.square(c))[::-1]
        self._neg = -self.sq  # ascending, for searchsorted
        self.cum = np.cumsum(self.sq)
        self.total = float(self.cum[-1]) if self.cum.size else 0.0

    def energy(self, k):
        """Energy of the `k` largest coefficients."""
        return float(self.cum[k - 1]) if k > 0 else 0.0

    def share(self, k):
        return self.energy(k) / self.total if self.total > 0 else 1.0

    def count_above(self, lam):
        """Number of squared coefficients above `lam`."""
        return int(np.searchsorted(self._neg, -lam, side="left"))


def _best(scores, key):
    """Index of the best candidate by `key` (ties go to the earlier one: identity first)."""
    best, best_val = 0, key(scores[0])
    for j in range(1, len(scores)):
        v = key(scores[j])
        if v > best_val + 1e-12 * max(abs(best_val), 1e-30):
            best, best_val = j, v
    return best


def _global_counts(scores, picks, total_k):
    """Per-layer counts of the global top-`total_k` coefficients under `picks`; ties at the
    threshold go to the earlier layers (as a stable top-k), and every layer keeps at least one
    (as `selection.select_masks`)."""
    chosen = [scores[n][j] for n, j in picks.items()]
    allsq = np.concatenate([s.sq for s in chosen])
    k = min(total_k, allsq.size)
    thr = np.partition(allsq, allsq.size - k)[allsq.size - k]
    above = [s.count_above(thr) for s in chosen]
    missing = k - sum(above)
    counts = {}
    for n, s, a in zip(picks, chosen, above):
        take = min(int(np.sum(s.sq == thr)), max(missing, 0))
        counts[n] = max(1, a + take)
        missing -= take
    return counts


def _total_energy(scores, picks, counts):
    return sum(scores[n][j].energy(counts[n]) for n, j in picks.items())


def _lagrangian_picks(scores, total_k):
    """Per-layer candidate maximising ``sum(max(c^2 - lam, 0))`` for the ``lam`` at which about
    `total_k` coefficients pass."""
    def pick(lam):
        picks = {n: _best(s, lambda x: x.energy(x.count_above(lam)) - lam * x.count_above(lam))
                 for n, s in scores.items()}
        return picks, sum(scores[n][j].count_above(lam) for n, j in picks.items())

    hi = max(float(s.sq[0]) for ss in scores.values() for s in ss if s.sq.size)
    lo = hi * 1e-30
    if hi <= 0 or pick(lo)[1] < total_k:
        return pick(0.0)[0]
    for _ in range(100):  # geometric bisection: largest lam with count(lam) >= total_k
        mid = np.sqrt(lo * hi)
        if pick(mid)[1] >= total_k:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1 + 1e-9:
            break
    return pick(lo)[0]


def _allocate(scores, keep_ratio, scope):
    """``(picks, counts)``: chosen candidate index and number kept per layer."""
    names = list(scores)
    if isinstance(keep_ratio, dict) or scope == "per_layer":
        counts = {}
        for n in names:
            r = keep_ratio.get(n, 1.0) if isinstance(keep_ratio, dict) else keep_ratio
            counts[n] = selection.budget(r, scores[n][0].sq.size)
        return {n: _best(scores[n], lambda x, k=counts[n]: x.energy(k)) for n in names}, counts
    total_n = sum(scores[n][0].sq.size for n in names)
    total_k = max(len(names), selection.budget(keep_ratio, total_n))
    picks = _lagrangian_picks(scores, total_k)
    counts = _global_counts(scores, picks, total_k)
    for _ in range(EXCHANGE_ROUNDS):
        new = {n: _best(scores[n], lambda x, k=counts[n]: x.energy(k)) for n in names}
        if new == picks:
            break
        picks, counts = new, _global_counts(scores, new, total_k)
    identity = {n: 0 for n in names}
    id_counts = _global_counts(scores, identity, total_k)
    if _total_energy(scores, identity, id_counts) > _total_energy(scores, picks, counts):
        picks, counts = identity, id_counts
    return picks, counts


def _loss_function(model, spec):
    import keras

    loss = spec.loss if spec.loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise ValueError("AutoBasis(criterion='loss') needs a compiled model or loss=. "
                         "Received: loss=None")
    if isinstance(loss, (list, tuple, dict)):
        raise ValueError("AutoBasis(criterion='loss') supports single-output models; pass "
                         f"loss=. Received: model.loss={loss!r}")
    return keras.losses.get(loss)


def _loss_picks(model, scores, counts, kernels, spec):
    """Per-layer candidate whose pruning alone raises the validation loss the least, and the
    losses ``{layer: [loss per candidate]}`` plus the dense loss."""
    import keras

    loss_fn = _loss_function(model, spec)
    x, y = spec.validation_data[0], spec.validation_data[1]

    def evaluate():
        y_pred = model(x, training=False)
        return float(keras.ops.convert_to_numpy(keras.ops.mean(loss_fn(y, y_pred))))

    dense_loss = evaluate()
    picks, losses = {}, {}
    for n, cands in scores.items():
        if len(cands) == 1:
            picks[n] = 0
            continue
        var, original = kernels[n], _numpy(kernels[n]).copy()
        layer_losses = []
        try:
            for s in cands:
                keep = selection._top_k_mask(np.abs(s.coefficients), counts[n])
                var.assign(s.transform.inverse(np.where(keep, s.coefficients, 0.0))
                           .astype(original.dtype))
                layer_losses.append(evaluate())
        finally:
            var.assign(original)
        losses[n] = layer_losses
        picks[n] = int(np.argmin(layer_losses))
    return picks, losses, dense_loss


def choose_plans(layer_candidates, kernels, keep_ratio, scope="global", spec=None, model=None):
    """Picks one plan per layer among its candidates.

    Args:
        layer_candidates: ``{layer: [LayerPlan, ...]}`` (identity first; a single plan is kept
            as is but takes part in the global ranking).
        kernels: ``{layer: kernel variable or array}``.
        keep_ratio: a float in (0, 1] or ``{layer: float}``.
        scope: ``"global"`` or ``"per_layer"``.
        spec: the `bases.AutoBasis` (criterion, validation data).
        model: the model (for ``criterion="loss"``).

    Returns:
        ``{layer: LayerPlan}``; layers with several candidates get a ``choice`` record.
    """
    spec = spec or bases.AutoBasis()
    if scope not in selection.SCOPES:
        raise ValueError(f"scope must be one of {selection.SCOPES}. Received: scope={scope!r}")
    if not isinstance(keep_ratio, dict):
        selection.validate_keep_ratio(keep_ratio)
    scores = {n: [_Scores(p, kernels[n]) for p in cands]
              for n, cands in layer_candidates.items()}
    picks, counts = _allocate(scores, keep_ratio, scope)
    losses, dense_loss = {}, None
    if spec.criterion == "loss":
        if model is None:
            raise ValueError("AutoBasis(criterion='loss') needs the model.")
        picks, losses, dense_loss = _loss_picks(model, scores, counts, kernels, spec)
    out = {}
    for n, cands in layer_candidates.items():
        plan = cands[picks[n]]
        if len(cands) == 1:
            out[n] = plan
            continue
        rows = []
        for j, (p, s) in enumerate(zip(cands, scores[n])):
            row = {"basis": p.basis_name, "view": p.view, "level": p.level,
                   "energy_kept": s.share(counts[n])}
            if n in losses:
                row["loss"] = losses[n][j]
            rows.append(row)
        choice = {
            "criterion": spec.criterion, "scope": scope,
            "keep_ratio": keep_ratio.get(n, 1.0) if isinstance(keep_ratio, dict) else keep_ratio,
            "kept": int(counts[n]), "layer_keep_ratio": counts[n] / plan.n_coefficients,
            "energy_kept": rows[picks[n]]["energy_kept"], "candidates": rows,
        }
        if dense_loss is not None:
            choice["dense_loss"] = dense_loss
        out[n] = dataclasses.replace(plan, choice=choice)
    return out
