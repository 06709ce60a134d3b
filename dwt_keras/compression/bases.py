"""Per-layer transform plans: which basis, along which axes of a kernel, with how many levels.

A basis is only useful where the weights have geometry (see the project's methods notes, §1).
Channels, units and embedding dimensions have no order, so by default a transform never runs
across them:

* a ``Dense`` layer fed by a ``Flatten`` of an ``(H, W, C)`` feature map: each unit's input weights
  form an ``H x W x C`` receptive field; the transform runs over ``H`` and ``W`` (view
  ``"receptive_field_hw"``);
* a convolution kernel ``(kh, kw, cin, cout)``: over the spatial taps ``kh, kw`` of each filter
  (view ``"conv_spatial"``);
* any other ``Dense`` kernel ``(n_in, n_out)``: 1-D over the input axis (view ``"input_axis"``);
* an ``Embedding`` table ``(vocab, dim)``: 1-D over each token's embedding axis (view
  ``"embedding_axis"``).

Levels. With ``mode="periodization"`` (the default) and a length that stays even at every level,
an orthogonal wavelet gives an orthogonal matrix and a biorthogonal one an invertible square
matrix: the coefficient mask is then held *exactly* (the projection ``B^-1(M * B(W))`` is
idempotent). The automatic level is therefore the largest level that keeps every transformed
length even and does not exceed ``pywt.dwt_max_level``. A requested ``level`` above that is
lowered, with a warning. Other modes give a redundant transform (more coefficients than weights)
whose mask projection is not idempotent: such plans can be made for analysis, with a warning, but
`constraints.CompressionState` refuses them (see `check_exact_mode`).

Short spatial axes (3x3 and 5x5 kernels, 4x4 feature maps). When the spatial axes allow no exact
level of the requested wavelet (``pywt.dwt_max_level(3, "db2") == 0``; odd lengths), a zero-level
"DWT" would be plain magnitude pruning in disguise. Instead, with a ``UserWarning`` naming the
layer, ``small_kernel_fallback`` decides:

* ``"dct"`` (default): an orthonormal 2-D DCT over the taps of each filter (as CNNpack does), or
  1-D over a short input axis — it fits any length and never mixes channels;
* ``"identity"``: no transform (magnitude pruning), stated in the plan;
* ``"flatten"``: only when asked, 1-D over the flattened ``cin * kh * kw`` axis (``C * H * W`` for
  a receptive field), spatial taps fastest; this mixes unrelated channels. If that length allows
  no level either, identity.

``1 x 1`` taps have nothing to transform: they are planned as identity without a warning.

``basis="auto"`` (or an `AutoBasis`) chooses per layer among identity, the DCT and a list of
orthogonal wavelets at every exact level, over every view allowed above, the plan that keeps the
most energy at the layer's budget (or, with ``criterion="loss"``, the least loss increase on a
validation batch): see `dwt_keras.compression.auto`. Identity is always a candidate, so at a
given keep ratio ``auto`` never keeps less energy than magnitude pruning.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers
import warnings

import numpy as np

BASIS_KINDS = ("identity", "dct", "wavelet")
#: Values of ``small_kernel_fallback``; the first is the default.
FALLBACKS = ("dct", "identity", "flatten")
DEFAULT_FALLBACK = FALLBACKS[0]
VIEWS = (
    "none",
    "input_axis",
    "receptive_field_hw",
    "receptive_field_flattened",
    "conv_spatial",
    "conv_flattened",
    "embedding_axis",
)
#: Layers whose kernel (or embedding table) is compressed (others keep every weight dense).
COMPRESSIBLE_CLASSES = ("Dense", "Conv1D", "Conv2D", "EinsumDense", "Embedding")
#: Wavelets that ``basis="auto"`` tries by default (each at every exact level), besides identity
#: and the DCT. Orthogonal only: their coefficients' energy equals the weights' energy, so the
#: energy kept is comparable across bases and layers. benchmarks/bench_auto_basis.py measured
#: haar, db2, db3, db4, sym4, coif1, coif2 on trained kernels: the coiflets were never the best
#: wavelet of any layer type, and the DCT kept the most energy in every type.
AUTO_WAVELETS = ("haar", "db2", "db3", "db4", "sym4")
#: Budget at which ``basis="auto"`` compares bases when no keep ratio is known yet (the
#: compression state chooses again at its first pruning, at the real keep ratio).
AUTO_PROVISIONAL_KEEP = 0.1
OVERRIDE_KEYS = ("basis", "wavelet", "mode", "level", "geometry", "small_kernel_fallback", "skip")


# --------------------------------------------------------------------------- #
# Basis names
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True)
class AutoBasis:
    """``basis="auto"`` with options: choose each layer's basis and view on its trained weights.

    Pass it wherever a ``basis`` is accepted (`plan_model`, `compress_model`, the compression
    callbacks); the string ``"auto"`` is ``AutoBasis()``.

    Args:
        wavelets: orthogonal wavelets to try besides identity and the DCT (each at every exact
            level, or at the requested ``level``).
        criterion: ``"energy"`` (the most coefficient energy kept at the layer's budget) or
            ``"loss"`` (the least increase of the loss on `validation_data` when only that layer
            is pruned at its budget).
        keep_ratio: the budget at which bases are compared; ``None``: the final keep ratio of the
            schedule (the callbacks pass it) or the first pruning's keep ratio.
        validation_data: ``(x, y)`` arrays, needed for ``criterion="loss"``.
        loss: loss function ``loss(y_true, y_pred)`` for ``criterion="loss"``; default: the
            model's compiled loss.
        include_dct: try the DCT over each view.

    Example:

    >>> spec = AutoBasis(wavelets=("haar", "db4"), criterion="energy")
    >>> spec.candidates()
    ('identity', 'dct', 'haar', 'db4')
    """

    wavelets: tuple = AUTO_WAVELETS
    criterion: str = "energy"
    keep_ratio: float | None = None
    validation_data: object = dataclasses.field(default=None, compare=False, repr=False)
    loss: object = dataclasses.field(default=None, compare=False, repr=False)
    include_dct: bool = True

    def __post_init__(self):
        import pywt

        if isinstance(self.wavelets, str):
            object.__setattr__(self, "wavelets", (self.wavelets,))
        names = []
        for w in self.wavelets:
            if basis_kind(w) != "wavelet":
                raise ValueError(f"AutoBasis wavelets must be discrete wavelet names (identity "
                                 f"and dct are always tried). Received: wavelets={self.wavelets!r}")
            name = canonical_basis(w)
            if not pywt.Wavelet(name).orthogonal:
                raise ValueError(
                    f"AutoBasis compares the energy kept, which is only meaningful for "
                    f"orthogonal wavelets; {name!r} is biorthogonal (its coefficients are not on "
                    f"the weights' scale). Request it as a fixed basis instead. "
                    f"Received: wavelets={self.wavelets!r}")
            if name not in names:
                names.append(name)
        object.__setattr__(self, "wavelets", tuple(names))
        if self.criterion not in ("energy", "loss"):
            raise ValueError(f"criterion must be 'energy' or 'loss'. "
                             f"Received: criterion={self.criterion!r}")
        if self.keep_ratio is not None:
            _check_ratio(self.keep_ratio, "keep_ratio")
        if self.criterion == "loss":
            vd = self.validation_data
            if not (isinstance(vd, (tuple, list)) and len(vd) >= 2):
                raise ValueError("criterion='loss' needs validation_data=(x, y). "
                                 f"Received: validation_data={type(vd).__name__}")
        if not isinstance(self.include_dct, bool):
            raise ValueError(f"include_dct must be a bool. Received: include_dct={self.include_dct!r}")

    def candidates(self):
        """Basis names tried, identity first."""
        return ("identity",) + (("dct",) if self.include_dct else ()) + tuple(self.wavelets)

    def get_config(self):
        return {"wavelets": list(self.wavelets), "criterion": self.criterion,
                "keep_ratio": self.keep_ratio, "include_dct": self.include_dct}

    def __deepcopy__(self, memo):
        return self  # immutable; shares the validation arrays


def _check_ratio(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a number in (0, 1]. Received: {name}={value!r}")
    return float(value)


def is_auto(basis):
    return isinstance(basis, AutoBasis) or (isinstance(basis, str)
                                            and basis.strip().lower() == "auto")


def auto_spec(basis):
    """The `AutoBasis` of ``"auto"`` / an `AutoBasis`."""
    return basis if isinstance(basis, AutoBasis) else AutoBasis()


def basis_kind(basis):
    """``"identity"``, ``"dct"``, ``"wavelet"`` or ``"auto"`` for a basis (validated)."""
    if isinstance(basis, AutoBasis):
        return "auto"
    if not isinstance(basis, str) or not basis.strip():
        raise ValueError("basis/wavelet must be a name: 'identity', 'dct', 'auto' or a discrete "
                         f"wavelet. Received: basis={basis!r}")
    name = basis.strip().lower()
    if name in ("identity", "none"):
        return "identity"
    if name in ("dct", "auto"):
        return name
    from dwt_keras import wavelets

    try:
        wavelets.get_wavelet(name)
    except ValueError as e:
        raise ValueError(
            f"Unknown basis {basis!r}: use 'identity' (magnitude pruning), 'dct', 'auto', or a "
            f"discrete wavelet. {e}"
        ) from None
    return "wavelet"


def canonical_basis(basis):
    kind = basis_kind(basis)
    return kind if kind != "wavelet" else basis.strip().lower()


def _v2(n):
    """Number of times ``n`` can be halved while staying an integer (2-adic valuation)."""
    n, v = int(n), 0
    while n > 0 and n % 2 == 0:
        n //= 2
        v += 1
    return v


def _dec_len(wavelet):
    from dwt_keras import wavelets

    return wavelets.get_wavelet(wavelet).dec_len


def exact_level(lengths, wavelet, mode="periodization"):
    """Largest level at which the transform over ``lengths`` is a square, invertible matrix.

    Args:
        lengths: the transformed axes' lengths.
        wavelet: a discrete wavelet name.
        mode: signal-extension mode.

    Returns:
        ``(level, redundant)``: for periodization (or 2-tap filters in any mode) the level is
        ``min(dwt_max_level, 2-adic valuation)`` over the lengths and ``redundant`` is False;
        for longer filters in other modes every level is redundant, so the level is
        ``dwt_max_level`` and ``redundant`` is True.
    """
    import pywt

    dec_len = _dec_len(wavelet)
    max_level = min(pywt.dwt_max_level(int(n), dec_len) for n in lengths)
    if mode == "periodization" or dec_len == 2:
        return min(max_level, min(_v2(n) for n in lengths)), False
    return max_level, max_level > 0


def check_exact_mode(basis, mode):
    """Raises ``ValueError`` if `basis` in `mode` gives a redundant transform, whose coefficient
    mask cannot be held exactly during retraining (call it before training starts).

    Only wavelets of more than two taps are redundant outside ``"periodization"``; identity, the
    DCT and haar are exact in every mode, and ``"auto"`` only considers exact candidates.
    """
    from dwt_keras import wavelets

    mode = wavelets.validate_mode(mode)
    if basis_kind(basis) == "wavelet" and mode != "periodization" and _dec_len(basis) > 2:
        raise ValueError(
            f"mode={mode!r} with {canonical_basis(basis)!r} is a redundant transform (more "
            "coefficients than weights) whose coefficient mask is not idempotent: pruned kernels "
            "drift off the mask at every step (relative error ~0.2). Use mode='periodization' "
            "(exact and non-redundant), or a 2-tap wavelet such as 'haar'. "
            f"Received: mode={mode!r}, basis={basis!r}")
    return mode


def _coeff_len(n, wavelet, mode):
    import pywt

    return pywt.dwt_coeff_len(int(n), _dec_len(wavelet), mode)


@dataclasses.dataclass
class LayerPlan:
    """How one kernel is transformed. JSON-ready through `to_dict` / `from_dict`.

    Attributes:
        layer: layer name.
        layer_class: e.g. ``"Dense"``, ``"Conv2D"``, ``"Embedding"``.
        kernel_shape: the kernel's shape.
        basis: ``"identity"``, ``"dct"`` or ``"wavelet"``.
        wavelet: wavelet name (``None`` unless ``basis == "wavelet"``).
        mode: signal-extension mode (wavelets only).
        level: decomposition level (0 for identity/dct).
        view: one of `VIEWS`: how the kernel is laid out before the transform.
        axes: human-readable description of the transformed axes.
        pre_shape, perm, x_shape: the kernel is reshaped to ``pre_shape``, transposed by ``perm``
            and reshaped to ``x_shape``; the transform runs over ``transform_axes`` of that. The
            last axis of ``x_shape`` is never transformed: it is the output unit (``cout``, a
            Dense unit; a token for an embedding), so the flat coefficient ``i`` belongs to unit
            ``i % x_shape[-1]``.
        transform_axes: axes of ``x_shape`` that are transformed.
        n_weights, n_coefficients: sizes before / after the transform.
        redundant: True if the transform has more coefficients than weights.
        fallback: why a fallback was used (``None`` if the basis applied as requested).
        choice: for ``basis="auto"``: the criterion, the budget and every candidate's figures
            (``energy_kept``, and ``loss`` with the loss criterion). Not needed to rebuild the
            transform (see `transform_dict`).
    """

    layer: str
    layer_class: str
    kernel_shape: tuple
    basis: str
    wavelet: str | None
    mode: str | None
    level: int
    view: str
    axes: str
    pre_shape: tuple
    perm: tuple | None
    x_shape: tuple
    transform_axes: tuple
    n_weights: int
    n_coefficients: int
    redundant: bool = False
    fallback: str | None = None
    choice: dict | None = dataclasses.field(default=None, compare=False)

    def to_dict(self):
        """Every field, JSON-ready (the report's ``plan[]``)."""
        d = dataclasses.asdict(self)
        for k in ("kernel_shape", "pre_shape", "x_shape", "transform_axes"):
            d[k] = [int(v) for v in d[k]]
        d["perm"] = None if self.perm is None else [int(v) for v in self.perm]
        return d

    def transform_dict(self):
        """The fields that rebuild the transform (`to_dict` without ``choice``): what a
        compressed file needs to store."""
        d = self.to_dict()
        d.pop("choice")
        return d

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        for k in ("kernel_shape", "pre_shape", "x_shape", "transform_axes"):
            d[k] = tuple(int(v) for v in d[k])
        d["perm"] = None if d.get("perm") is None else tuple(int(v) for v in d["perm"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def basis_name(self):
        return self.wavelet if self.basis == "wavelet" else self.basis

    @property
    def n_units(self):
        """Number of output units, the groups of the flat coefficients (coefficient ``i`` belongs
        to unit ``i % n_units``), or None for an embedding table (which has no output units)."""
        if self.layer_class == "Embedding":
            return None
        return int(self.x_shape[-1]) if self.view != "none" else int(self.kernel_shape[-1])

    def describe(self):
        """``"haar L2 over receptive_field_hw"``-style summary of the transform."""
        what = self.basis_name + (f" L{self.level}" if self.basis == "wavelet" else "")
        return what if self.basis == "identity" else f"{what} over {self.view}"


class ModelPlan(list):
    """The per-layer `LayerPlan` list of a model (a ``list``), plus what was left out.

    Attributes:
        dense_layers: one dict per layer with weights that is not compressed:
            ``{"layer", "class", "n_weights", "reason"}``.
        auto: for ``basis="auto"``, what `CompressionState` needs to choose again on the trained
            weights at its first pruning (``None`` otherwise).
    """

    def __init__(self, plans=(), dense_layers=(), auto=None):
        super().__init__(plans)
        self.dense_layers = list(dense_layers)
        self.auto = auto


# --------------------------------------------------------------------------- #
# Geometry detection
# --------------------------------------------------------------------------- #
def kernel_variable(layer):
    """The weight a plan compresses: ``kernel`` (Dense, Conv, EinsumDense) or ``embeddings``
    (Embedding); None if the layer has neither (or is not built)."""
    for attr in ("kernel", "embeddings"):
        try:
            v = getattr(layer, attr, None)
        except (AttributeError, ValueError):
            v = None
        if v is not None and hasattr(v, "shape") and hasattr(v, "assign"):
            return v
    return None


def _in_functional_graph(layer):
    return bool(getattr(layer, "_inbound_nodes", None))


def _producer(layer):
    """The layer whose output feeds `layer` (first input), or None."""
    try:
        node = layer._inbound_nodes[0]
        tensor = node.input_tensors[0]
        return tensor._keras_history[0]
    except (AttributeError, IndexError, TypeError):
        return None


def _flatten_source_shape(layer):
    """``(H, W, C)`` if `layer`'s input is a ``Flatten`` of a rank-3 or rank-2 map, else None."""
    import keras

    prod = _producer(layer)
    if not isinstance(prod, keras.layers.Flatten):
        return None
    try:
        shape = tuple(prod.input.shape[1:])
    except (AttributeError, ValueError):
        return None
    if any(s is None for s in shape):
        return None
    if len(shape) == 2:
        return (int(shape[0]), int(shape[1]), 1)
    if len(shape) == 3:
        if getattr(prod, "data_format", "channels_last") == "channels_first":
            # Flatten permutes channels-first inputs to channels-last order before flattening.
            return (int(shape[1]), int(shape[2]), int(shape[0]))
        return tuple(int(s) for s in shape)
    return None


def _resolve_geometry(layer, kshape, geometry, warn, name=None):
    """``(H, W, C)`` or None for a 2-D kernel, from ``geometry="auto" | None | (H, W[, C])``.

    `name`: the layer's plan key; a layer nested in a custom layer (a path) is fed inside that
    layer's `call`, so it plans over its input axis without the warning."""
    name = name or layer.name
    if len(kshape) != 2 or type(layer).__name__ == "Embedding":
        if geometry not in ("auto", None):
            raise ValueError(
                f"Layer '{name}': geometry applies to a Dense kernel fed by a flattened "
                f"feature map, not to a {type(layer).__name__} kernel of shape {kshape}. "
                f"Received: geometry={geometry!r}")
        return None
    if geometry is None:
        return None
    if geometry == "auto":
        if not _in_functional_graph(layer):
            if warn and not is_nested_key(name):
                warnings.warn(
                    f"Layer '{name}': the geometry of its input cannot be detected (the "
                    "layer was never called in a functional graph, e.g. it belongs to a "
                    f"subclassed model), so its {kshape[0]} inputs are planned as a plain input "
                    "axis. If its input is a flattened H x W x C feature map, pass "
                    f"layer_overrides={{'{name}': {{'geometry': [H, W, C]}}}}.",
                    UserWarning, stacklevel=3)
            return None
        return _flatten_source_shape(layer)
    try:
        geo = tuple(int(g) for g in geometry)
    except (TypeError, ValueError):
        geo = ()
    if len(geo) == 2:
        geo = (*geo, 1)
    if len(geo) != 3 or int(np.prod(geo)) != kshape[0]:
        raise ValueError(
            f"Layer '{name}': geometry {geometry} does not match its kernel {kshape} "
            "(need (H, W[, C]) with H*W*C equal to the kernel's input size). "
            f"Received: geometry={geometry!r}")
    return geo


# --------------------------------------------------------------------------- #
# Views and plans
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True)
class _View:
    name: str
    pre_shape: tuple
    perm: tuple | None
    x_shape: tuple
    axes: tuple
    text: str

    @property
    def lengths(self):
        return [int(self.x_shape[a]) for a in self.axes]


def _views(cls_name, kshape, geometry):
    """``(preferred, flattened)`` views of a kernel; the preferred one never crosses channels,
    the flattened one (or None) does. ``(None, None)`` if the kernel has no known geometry."""
    if cls_name == "Conv2D" and len(kshape) == 4:
        kh, kw, cin, cout = kshape
        return (_View("conv_spatial", kshape, None, kshape, (0, 1),
                      f"kh,kw ({kh}x{kw}) of each {kh}x{kw} filter, per (cin, cout)"),
                _View("conv_flattened", kshape, (2, 0, 1, 3), (cin * kh * kw, cout), (0,),
                      f"flattened cin*kh*kw ({cin}*{kh}*{kw}={cin * kh * kw}, spatial fastest), "
                      "per cout"))
    if cls_name == "Conv1D" and len(kshape) == 3:
        k, cin, cout = kshape
        return (_View("conv_spatial", kshape, None, kshape, (0,), f"k ({k}) of each filter, "
                      "per (cin, cout)"),
                _View("conv_flattened", kshape, (1, 0, 2), (cin * k, cout), (0,),
                      f"flattened cin*k ({cin * k}, taps fastest), per cout"))
    if cls_name == "Embedding" and len(kshape) == 2:
        vocab, dim = kshape
        return (_View("embedding_axis", kshape, (1, 0), (dim, vocab), (0,),
                      f"embedding axis ({dim}) of each of the {vocab} tokens"), None)
    if len(kshape) == 2 and geometry is not None:
        h, w, c = geometry
        n_out = kshape[1]
        pre = (h, w, c, n_out)
        return (_View("receptive_field_hw", pre, None, pre, (0, 1),
                      f"H,W ({h}x{w}) of each unit's {h}x{w}x{c} receptive field"),
                _View("receptive_field_flattened", pre, (2, 0, 1, 3), (c * h * w, n_out), (0,),
                      f"flattened C*H*W ({c}*{h}*{w}={c * h * w}, spatial fastest), per unit"))
    if len(kshape) == 2:
        return _View("input_axis", kshape, None, kshape, (0,),
                     f"input axis ({kshape[0]}), per unit"), None
    return None, None


def _identity_plan(layer, cls_name, kshape, fallback=None):
    n = int(np.prod(kshape))
    return LayerPlan(layer, cls_name, tuple(kshape), "identity", None, None, 0, "none", "none",
                     (n,), None, (n,), (0,), n, n, False, fallback)


def _wavelet_sizes(x_shape, axes, wavelet, mode, level):
    """Coefficient count of a `level`-level transform over `axes` of `x_shape`."""
    other = int(np.prod([s for i, s in enumerate(x_shape) if i not in axes]))
    lens = [int(x_shape[a]) for a in axes]
    total = 0
    for _ in range(level):
        lens_next = [_coeff_len(n, wavelet, mode) for n in lens]
        # details of this level: all bands but the approximation
        total += (int(np.prod(lens_next)) * (2 ** len(axes) - 1))
        lens = lens_next
    total += int(np.prod(lens))
    return total * other


def _view_plan(name, cls_name, kshape, view, kind, wavelet=None, mode=None, level=0,
               fallback=None):
    n = int(np.prod(kshape))
    is_wavelet = kind == "wavelet"
    ncoef = _wavelet_sizes(view.x_shape, view.axes, wavelet, mode, level) if is_wavelet else n
    return LayerPlan(name, cls_name, tuple(kshape), kind, wavelet if is_wavelet else None,
                     mode if is_wavelet else None, int(level) if is_wavelet else 0, view.name,
                     view.text, tuple(view.pre_shape), view.perm, tuple(view.x_shape),
                     tuple(view.axes), n, int(ncoef), bool(ncoef > n), fallback)


def _check_level(level):
    if level is not None and (isinstance(level, bool) or not isinstance(level, (int, np.integer))
                              or level < 1):
        raise ValueError("level must be a positive integer or None (automatic). "
                         f"Received: level={level!r}")


def _check_fallback(small_kernel_fallback):
    if small_kernel_fallback not in FALLBACKS:
        raise ValueError(f"small_kernel_fallback must be one of {FALLBACKS}. "
                         f"Received: small_kernel_fallback={small_kernel_fallback!r}")


def _layer_kernel_shape(layer):
    kernel = kernel_variable(layer)
    if kernel is None:
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) has no kernel or "
                         "embeddings to compress.")
    return tuple(int(s) for s in kernel.shape)


def candidate_plans(layer, bases=("identity", "dct") + AUTO_WAVELETS, mode="periodization",
                    level=None, small_kernel_fallback=DEFAULT_FALLBACK, geometry="auto",
                    warn=True, name=None):
    """Every exact plan of `layer`'s kernel over the allowed views: the candidates of ``auto``.

    Args:
        layer: a built layer with a kernel (or embeddings).
        bases: basis names; identity is always included (first).
        mode: signal-extension mode; redundant candidates are left out.
        level: ``None``: each wavelet at every exact level; an int: at that level (or the
            largest exact one below it).
        small_kernel_fallback: ``"flatten"`` adds the views that flatten across channels.
        geometry: as in `plan_layer`.
        warn: warn when the input geometry cannot be detected.
        name: the plans' layer key (as in `plan_layer`).

    Returns:
        A list of `LayerPlan`, identity first, none redundant.
    """
    from dwt_keras import wavelets

    mode = wavelets.validate_mode(mode)
    _check_level(level)
    _check_fallback(small_kernel_fallback)
    kshape = _layer_kernel_shape(layer)
    cls_name = type(layer).__name__
    name = name or layer.name
    geo = _resolve_geometry(layer, kshape, geometry, warn, name)
    out = [_identity_plan(name, cls_name, kshape)]
    preferred, flattened = _views(cls_name, kshape, geo)
    views = [v for v in (preferred, flattened if small_kernel_fallback == "flatten" else None)
             if v is not None and max(v.lengths) > 1]
    for view in views:
        for b in bases:
            kind = basis_kind(b)
            if kind == "dct":
                out.append(_view_plan(name, cls_name, kshape, view, "dct"))
            elif kind == "wavelet":
                wav = canonical_basis(b)
                max_lvl, redundant = exact_level(view.lengths, wav, mode)
                if redundant or max_lvl < 1:
                    continue
                levels = range(1, max_lvl + 1) if level is None else [min(int(level), max_lvl)]
                out.extend(_view_plan(name, cls_name, kshape, view, "wavelet", wav, mode, lv)
                           for lv in levels)
    return out


def plan_layer(layer, basis="haar", mode="periodization", level=None,
               small_kernel_fallback=DEFAULT_FALLBACK, geometry="auto", warn=True, name=None):
    """Plans the transform of one layer's kernel.

    Args:
        layer: a built Keras layer with a ``kernel`` (or an ``Embedding``).
        basis: ``"identity"``, ``"dct"``, a discrete wavelet name, or ``"auto"`` / `AutoBasis`
            (chosen on the layer's current weights at the spec's budget, or
            `AUTO_PROVISIONAL_KEEP`).
        mode: signal-extension mode (wavelets).
        level: ``None`` for the largest exact level, or a requested level (lowered with a warning
            where the kernel is too small).
        small_kernel_fallback: ``"dct"``, ``"identity"`` or ``"flatten"`` (see the module
            docstring).
        geometry: ``"auto"`` (detect a preceding ``Flatten``), ``None`` (plain 1-D), or an
            explicit ``(H, W, C)`` whose product is the kernel's input size.
        warn: emit ``UserWarning`` for fallbacks, lowered levels and undetectable geometry.
        name: the plan's layer key (default: the layer's name; `named_layers` gives the path of
            a layer nested in a custom layer).

    Returns:
        A `LayerPlan`.

    Example:

    >>> import keras
    >>> conv = keras.layers.Conv2D(8, 5, name="c5")
    >>> conv.build((None, 12, 12, 4))
    >>> plan_layer(conv, "haar", warn=False).describe()
    'dct over conv_spatial'
    """
    from dwt_keras import wavelets

    kind = basis_kind(basis)
    mode = wavelets.validate_mode(mode)
    _check_fallback(small_kernel_fallback)
    _check_level(level)
    if kind == "auto":
        from dwt_keras.compression import auto

        spec = auto_spec(basis)
        key = name or layer.name
        cands = candidate_plans(layer, spec.candidates(), mode, level, small_kernel_fallback,
                                geometry, warn, name=key)
        keep = spec.keep_ratio or AUTO_PROVISIONAL_KEEP
        return auto.choose_plans(layer_candidates={key: cands},
                                 kernels={key: kernel_variable(layer)},
                                 keep_ratio=keep, scope="per_layer", spec=spec)[key]
    wavelet = canonical_basis(basis) if kind == "wavelet" else None
    kshape = _layer_kernel_shape(layer)
    cls_name = type(layer).__name__
    name = name or layer.name
    geo = _resolve_geometry(layer, kshape, geometry, warn and kind != "identity", name)

    preferred, flattened = _views(cls_name, kshape, geo)
    if preferred is None:
        return _identity_plan(name, cls_name, kshape,
                              fallback=f"kernel of shape {kshape} has no known geometry")
    if kind == "identity":
        return _identity_plan(name, cls_name, kshape)
    lengths = preferred.lengths
    if max(lengths) == 1:
        return _identity_plan(name, cls_name, kshape,
                              fallback=f"{preferred.name} axes {lengths}: 1x1 taps, nothing to "
                                       "transform; used identity")
    if kind == "dct":
        return _view_plan(name, cls_name, kshape, preferred, "dct")

    max_lvl, redundant = exact_level(lengths, wavelet, mode)
    if max_lvl >= 1:
        use = max_lvl if level is None else min(int(level), max_lvl)
        if level is not None and use < level and warn:
            warnings.warn(
                f"Layer '{name}': level {level} requested but the axes {lengths} allow at "
                f"most {max_lvl} exact level(s) of {wavelet}; using {use}.",
                UserWarning, stacklevel=2,
            )
        if redundant and warn:
            warnings.warn(
                f"Layer '{name}': mode '{mode}' with {wavelet} is a redundant transform; its "
                "coefficient mask cannot be held during retraining (compression refuses it; use "
                "mode='periodization' for an exact hold).",
                UserWarning, stacklevel=2,
            )
        return _view_plan(name, cls_name, kshape, preferred, "wavelet", wavelet, mode, use)

    # The preferred axes allow no level: documented fallback, never a silent zero-level DWT.
    reason = (f"{preferred.name} axes {lengths} allow no exact level of {wavelet} "
              f"(dwt_max_level/odd length)")

    def fell_back(what):
        if warn:
            warnings.warn(f"Layer '{name}': {reason}; falling back to {what}.", UserWarning,
                          stacklevel=3)

    if small_kernel_fallback == "dct":
        fell_back(f"an orthonormal DCT over the {preferred.text}")
        return _view_plan(name, cls_name, kshape, preferred, "dct",
                          fallback=f"{reason}; used dct over {preferred.name}")
    if small_kernel_fallback == "flatten" and flattened is not None:
        flvl, _ = exact_level(flattened.lengths, wavelet, mode)
        if flvl >= 1:
            use = flvl if level is None else min(int(level), flvl)
            fell_back(f"a 1-D {wavelet} transform over the {flattened.text} with {use} level(s) "
                      "(mixes channels: requested by small_kernel_fallback='flatten')")
            return _view_plan(name, cls_name, kshape, flattened, "wavelet", wavelet, mode, use,
                              fallback=f"{reason}; used {flattened.name}")
    fell_back("the identity basis (plain magnitude pruning) for this layer")
    return _identity_plan(name, cls_name, kshape, fallback=f"{reason}; used identity")


# --------------------------------------------------------------------------- #
# The whole model
# --------------------------------------------------------------------------- #
def _flatten_layers(model):
    """All leaf layers (nested models and layers included), in order, without duplicates."""
    seen, out = set(), []

    def visit(layer):
        subs = getattr(layer, "layers", None)
        if subs:
            for s in subs:
                visit(s)
        elif id(layer) not in seen:
            seen.add(id(layer))
            out.append(layer)

    for l in model.layers:
        visit(l)
    return out


def named_layers(model):
    """``[(key, layer)]``: the model's leaf layers (`_flatten_layers`, keyed by name), then the
    layers with a kernel nested inside its custom (non-model) layers, keyed by their path
    (``"block_0/attn/qkv"``: names repeat across a transformer's blocks, paths do not).

    Plans, masks and stored files name layers by these keys. Nested layers come after the
    model's own layers, so the positions of those (what a stored file checks) do not move.
    A path that is not unique (two sublayers of one owner with the same name) is left out: it
    cannot be named, and its kernel stays dense (the owner's `dense_layers` entry says so).
    """
    leaves = _flatten_layers(model)
    out = [(l.name, l) for l in leaves]
    for owner in leaves:
        out.extend(_nested_kernels(owner)[0])
    return out


def is_nested_key(key):
    """Whether a plan key is the path of a layer nested in a custom layer (`named_layers`)."""
    return "/" in key


def layers_by_key(model):
    """``{key: layer}`` of `named_layers`."""
    return dict(named_layers(model))


def _nested_kernel_paths(owner):
    """``[(path, layer)]`` of the layers with a kernel tracked inside a custom (non-model)
    layer, at any depth, in tracking order (empty for models and plain layers)."""
    if getattr(owner, "layers", None) or not hasattr(owner, "_flatten_layers"):
        return []
    out, seen = [], {id(owner)}

    def visit(layer, prefix):
        for sub in layer._flatten_layers(include_self=False, recursive=False):
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            path = f"{prefix}/{sub.name}"
            if kernel_variable(sub) is not None:
                out.append((path, sub))
            visit(sub, path)

    visit(owner, owner.name)
    return out


def _nested_kernels(owner):
    """``(named, unnamed)`` of the kernel layers nested in `owner`: ``[(path, layer)]`` whose
    path is unique (`named_layers` lists them), and the sorted paths that repeat (they cannot
    be named in a plan)."""
    paths = _nested_kernel_paths(owner)
    counts = collections.Counter(k for k, _ in paths)
    return ([(k, s) for k, s in paths if counts[k] == 1],
            sorted(k for k, c in counts.items() if c > 1))


def _n_kernel(layer):
    k = kernel_variable(layer)
    return 0 if k is None else int(np.prod(k.shape))


def compressible_layers(model, min_kernel_size=256, layers=None, exclude=()):
    """Layers whose kernel (or embedding table) would be compressed, in model order.

    Args:
        model: a built Keras model.
        min_kernel_size: kernels with fewer weights stay dense.
        layers: an explicit list of layer names (overrides the size rule); unknown names raise.
        exclude: names never compressed.
    """
    by_name = layers_by_key(model)
    with_kernel = [n for n, l in by_name.items() if kernel_variable(l) is not None]
    if layers is not None:
        unknown = [n for n in layers if n not in by_name]
        if unknown:
            raise ValueError(f"Unknown layer name(s) {unknown}; layers with a kernel: "
                             f"{with_kernel}. Received: layers={list(layers)!r}")
        bad = [n for n in layers if kernel_variable(by_name[n]) is None]
        if bad:
            raise ValueError(f"Layer(s) {bad} have no kernel to compress; layers with a kernel: "
                             f"{with_kernel}. Received: layers={list(layers)!r}")
        return [by_name[n] for n in layers if n not in set(exclude)]
    return [l for n, l in by_name.items()
            if type(l).__name__ in COMPRESSIBLE_CLASSES and n not in set(exclude)
            and kernel_variable(l) is not None and _n_kernel(l) >= int(min_kernel_size)]


def _dense_reason(key, layer, min_kernel_size, layers, exclude, overrides, unnamed=(),
                  holds_nested=False):
    cls_name = type(layer).__name__
    if unnamed:
        return (f"a custom {cls_name} holding {len(unnamed)} layer(s) with kernels whose paths "
                f"are not unique ({', '.join(unnamed)}): they cannot be named in a plan, so "
                "they stay dense (give the sublayers distinct names)")
    if kernel_variable(layer) is None and holds_nested:
        return (f"a custom {cls_name}: its own weights stay dense; the layers with kernels "
                "inside it are planned by path (see the plan's layers)")
    if key in overrides and overrides[key].get("skip"):
        return "layer_overrides: skip"
    if key in set(exclude):
        return "excluded (exclude=)"
    if kernel_variable(layer) is None:
        return "no kernel (biases, normalisation and other weights stay dense)"
    if layers is not None:
        return "not listed in layers="
    if cls_name not in COMPRESSIBLE_CLASSES:
        return (f"{cls_name} is not a compressible layer class ({', '.join(COMPRESSIBLE_CLASSES)}"
                "); name it in layers= or layer_overrides to compress its kernel")
    return f"kernel of {_n_kernel(layer)} weights < min_kernel_size={int(min_kernel_size)}"


def _validate_overrides(overrides, by_name, exclude):
    """Unknown layers, unknown settings and settings that do not apply are errors."""
    compressible = [n for n, l in by_name.items() if kernel_variable(l) is not None]
    unknown = sorted(set(overrides) - set(by_name))
    if unknown:
        raise ValueError(f"layer_overrides names unknown layer(s) {unknown}; layers that can be "
                         f"compressed: {compressible}. Received: layer_overrides={overrides!r}")
    for name, ov in overrides.items():
        where = f"layer_overrides[{name!r}]"
        if not isinstance(ov, dict):
            raise ValueError(f"{where} must be a dict of settings ({', '.join(OVERRIDE_KEYS)}). "
                             f"Received: {where}={ov!r}")
        layer = by_name[name]
        if kernel_variable(layer) is None:
            raise ValueError(f"{where}: layer '{name}' ({type(layer).__name__}) has no kernel or "
                             f"embeddings to compress; layers that can be compressed: "
                             f"{compressible}. Received: layer_overrides={{{name!r}: {ov!r}}}")
        bad = sorted(set(ov) - set(OVERRIDE_KEYS))
        if bad:
            raise ValueError(f"{where} has unknown setting(s) {bad}; valid: {list(OVERRIDE_KEYS)}."
                             f" Received: {where}={ov!r}")
        if "skip" in ov and (not isinstance(ov["skip"], bool) or (ov["skip"] and len(ov) > 1)):
            raise ValueError(f"{where}: 'skip' must be a bool, and skip=True takes no other "
                             f"setting. Received: {where}={ov!r}")
        if "basis" in ov and "wavelet" in ov:
            raise ValueError(f"{where}: give 'basis' or 'wavelet', not both. "
                             f"Received: {where}={ov!r}")
        if name in set(exclude) and not ov.get("skip"):
            raise ValueError(f"Layer '{name}' is both in exclude and in layer_overrides. "
                             f"Received: {where}={ov!r}")


def _check_applicable(name, ov, basis):
    kind = basis_kind(basis)
    where = f"layer_overrides[{name!r}]"
    for key in ("level", "mode"):
        if key in ov and kind in ("identity", "dct"):
            raise ValueError(f"{where}: '{key}' applies to wavelet bases (or 'auto'), not to "
                             f"basis {canonical_basis(basis)!r}. Received: {where}={ov!r}")


def plan_model(model, basis="haar", mode="periodization", level=None, min_kernel_size=256,
               layers=None, exclude=(), layer_overrides=None,
               small_kernel_fallback=DEFAULT_FALLBACK, warn=True, auto_keep_ratio=None,
               scope="global"):
    """Plans every compressed kernel of `model`.

    Args:
        model: a built Keras model.
        basis: ``"identity"``, ``"dct"``, a discrete wavelet name, or ``"auto"`` / `AutoBasis`
            (per-layer choice on the current weights), for all layers.
        mode: signal-extension mode (wavelets).
        level: ``None`` (largest exact level per layer; every exact level for ``auto``) or a
            requested level.
        min_kernel_size: kernels with fewer weights stay dense (biases and normalisation weights
            always stay dense).
        layers: explicit list of layer names to compress (default: by size).
        exclude: layer names never compressed.
        layer_overrides: ``{layer_name: {"basis"|"wavelet", "mode", "level", "geometry",
            "small_kernel_fallback"}}`` per-layer settings; ``{"skip": True}`` leaves it dense.
            Unknown layers, layers without a kernel and settings that do not apply raise.
        small_kernel_fallback: ``"dct"``, ``"identity"`` or ``"flatten"``.
        warn: emit warnings for fallbacks.
        auto_keep_ratio: the keep ratio at which ``auto`` compares bases (a schedule's final
            keep ratio); default: the `AutoBasis`'s, else `AUTO_PROVISIONAL_KEEP` (and the
            compression state chooses again at its first pruning's keep ratio).
        scope: ``"global"`` or ``"per_layer"``: how ``auto`` allocates the budget across layers
            (as the ranking of `CompressionState` will).

    Returns:
        A `ModelPlan`: the list of `LayerPlan` in model order, with ``dense_layers`` (every
        layer left dense and why) and, for ``auto``, what the compression state needs to choose
        again on the trained weights.

    Example:

    >>> import keras
    >>> from dwt_keras.models import lenet300
    >>> model = lenet300()
    >>> [p.view for p in plan_model(model, "haar")]
    ['receptive_field_hw', 'input_axis', 'input_axis']
    """
    from dwt_keras import wavelets

    basis_kind(basis)
    wavelets.validate_mode(mode)
    _check_fallback(small_kernel_fallback)
    _check_level(level)
    if auto_keep_ratio is not None:
        _check_ratio(auto_keep_ratio, "auto_keep_ratio")
    overrides = dict(layer_overrides or {})
    named = named_layers(model)
    by_name = dict(named)
    _validate_overrides(overrides, by_name, exclude)
    chosen = {id(l) for l in compressible_layers(model, min_kernel_size, layers, exclude)}
    chosen_names = {n for n, l in named if id(l) in chosen or (
        n in overrides and not overrides[n].get("skip"))} - {
        n for n, ov in overrides.items() if ov.get("skip")}

    plans, dense, auto_layers = {}, [], {}
    for key, l in named:
        if key not in chosen_names:
            # an owner's weights less its nested kernel layers' (they are entries of their own)
            nested, unnamed = ([], []) if is_nested_key(key) else _nested_kernels(l)
            listed = {id(w) for _, s in nested for w in s.weights}
            own = [w for w in l.weights if id(w) not in listed]
            if own:
                dense.append({"layer": key, "class": type(l).__name__,
                              "n_weights": int(sum(np.prod(w.shape) for w in own)),
                              "reason": _dense_reason(key, l, min_kernel_size, layers, exclude,
                                                      overrides, unnamed, bool(nested))})
                if unnamed:
                    dense[-1]["nested_layers"] = unnamed
            continue
        ov = overrides.get(key, {})
        b = ov.get("basis", ov.get("wavelet", basis))
        _check_applicable(key, ov, b)
        settings = dict(basis=b, mode=ov.get("mode", mode), level=ov.get("level", level),
                        small_kernel_fallback=ov.get("small_kernel_fallback",
                                                     small_kernel_fallback),
                        geometry=ov.get("geometry", "auto"))
        if is_auto(b):
            auto_layers[key] = settings
            plans[key] = None  # keeps model order
        else:
            plans[key] = plan_layer(l, warn=warn, name=key, **settings)

    unnamed = [d for d in dense if d.get("nested_layers")]
    if unnamed and warn:
        warnings.warn(
            f"{len(unnamed)} custom layer(s) hold layers with kernels whose paths are not "
            f"unique, so they cannot be planned: {', '.join(d['layer'] for d in unnamed)}; "
            "their weights are stored dense. See the plan's dense_layers.", stacklevel=2)

    auto_record = None
    if auto_layers:
        from dwt_keras.compression import auto

        specs = {auto_spec(s["basis"]) for s in auto_layers.values()}
        if len(specs) > 1:
            raise ValueError("All layers planned with 'auto' must share one AutoBasis. "
                             f"Received: {sorted(map(repr, specs))}")
        spec = specs.pop()
        explicit = spec.keep_ratio or auto_keep_ratio
        auto_record = auto.AutoRecord(spec=spec, settings=auto_layers,
                                      keep_ratio=explicit or AUTO_PROVISIONAL_KEEP,
                                      explicit_budget=explicit is not None, scope=scope)
        plans.update(auto.plan_auto(model, auto_record, fixed_plans={
            n: p for n, p in plans.items() if p is not None}, warn=warn))
    return ModelPlan([plans[n] for n in plans], dense_layers=dense, auto=auto_record)


def format_plan(plans):
    """A readable table of the per-layer plan (and, for a `ModelPlan`, the layers left dense)."""
    rows = [("layer", "kernel", "basis", "lvl", "view / axes", "coeffs", "note")]
    for p in plans:
        note = []
        if p.choice:
            c = p.choice
            ident = next((x["energy_kept"] for x in c["candidates"] if x["basis"] == "identity"),
                         None)
            note.append(f"auto ({c['criterion']}, {len(c['candidates'])} candidates): keeps "
                        f"{100 * c['energy_kept']:.1f}% of the energy at keep "
                        f"{c['layer_keep_ratio']:.3g}" +
                        (f" vs identity {100 * ident:.1f}%" if ident is not None else ""))
        if p.fallback:
            note.append("FALLBACK: " + p.fallback)
        if p.redundant:
            note.append("redundant (mask cannot be held)")
        rows.append((p.layer, "x".join(map(str, p.kernel_shape)), p.basis_name, str(p.level),
                     f"{p.view}: {p.axes}", str(p.n_coefficients), "; ".join(note)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + ("  " + r[-1] if r[-1] else ""))
    lines.insert(1, "-" * len(lines[0]))
    dense = getattr(plans, "dense_layers", None)
    if dense:
        lines.append(f"Left dense ({len(dense)} layer(s); biases of compressed layers too):")
        lines.extend(f"  {d['layer']} ({d['class']}, {d['n_weights']} weights): {d['reason']}"
                     for d in dense)
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# The transform itself (TensorFlow; runs inside compiled train steps)
# --------------------------------------------------------------------------- #
#: Transformed axes up to this length use exact transform matrices (built with
#: `dwt_keras.transforms.matrix`, the one DWT/DCT matrix builder) and matrix products: a few
#: large GEMMs per step instead of many small strided ops (the projection runs every optimizer
#: step). Longer axes, odd lengths and redundant modes use the polyphase functions directly.
#: Set to 0 to always use `dwt_keras.wavelets`.
MATRIX_MAX_LEN = 1024


def _transform_matrices(plan):
    """Per-axis / per-level ``(A, S)`` float32 matrices for the GEMM path, or None."""
    p = plan
    if p.basis == "identity" or p.redundant:
        return None
    lens = [p.x_shape[a] for a in p.transform_axes]
    if tuple(p.transform_axes) not in ((0,), (0, 1)) or max(lens) > MATRIX_MAX_LEN:
        return None
    f32 = lambda m: (m[0].astype(np.float32), m[1].astype(np.float32))  # noqa: E731
    from dwt_keras.transforms import matrix

    if p.basis == "dct":
        return [f32(matrix.dct_matrices(n)) for n in lens]
    if any(n % (2 ** p.level) for n in lens):
        return None
    if len(lens) == 1:
        return [f32(matrix.dwt_matrices(lens[0], p.wavelet, p.mode, p.level))]
    # 2-D pyramid: per level, one matrix per axis applied to the current approximation block
    mats, (h, w) = [], lens
    for _ in range(p.level):
        mats.append((f32(matrix.dwt_matrices(h, p.wavelet, p.mode)),
                     f32(matrix.dwt_matrices(w, p.wavelet, p.mode))))
        h, w = h // 2, w // 2
    return mats


class KernelTransform:
    """Forward / inverse transform of one kernel, as described by a `LayerPlan`.

    ``forward(kernel)`` returns the flat coefficient vector (``n_coefficients``);
    ``inverse(flat)`` returns a kernel of the original shape. Both are TensorFlow functions of
    static shape, usable eagerly, inside ``tf.function`` and inside the optimizer's constraint.

    Args:
        plan: a `LayerPlan`.
    """

    def __init__(self, plan):
        self.plan = plan
        p = plan
        self._band_shapes = None
        if p.basis == "wavelet":
            shapes = []
            lens = [p.x_shape[a] for a in p.transform_axes]
            per_level = []
            for _ in range(p.level):
                lens = [_coeff_len(n, p.wavelet, p.mode) for n in lens]
                per_level.append(list(lens))
            def band(lens_):
                s = list(p.x_shape)
                for a, n in zip(p.transform_axes, lens_):
                    s[a] = n
                return tuple(s)
            shapes.append(band(per_level[-1]))  # approximation
            nb = 2 ** len(p.transform_axes) - 1
            for lens_ in reversed(per_level):
                shapes.extend([band(lens_)] * nb)
            self._band_shapes = shapes
            self._band_sizes = [int(np.prod(s)) for s in shapes]
            assert sum(self._band_sizes) == p.n_coefficients, (shapes, p)
        self._mats = _transform_matrices(p)

    def approximation_mask(self):
        """Boolean flat mask of the coarsest approximation band (DC terms for ``dct``)."""
        p = self.plan
        m = np.zeros(p.n_coefficients, dtype=bool)
        if p.basis == "wavelet":
            m[: self._band_sizes[0]] = True
        elif p.basis == "dct":
            idx = np.zeros(p.x_shape, dtype=bool)
            sl = [slice(None)] * len(p.x_shape)
            for a in p.transform_axes:
                sl[a] = 0
            idx[tuple(sl)] = True
            m = idx.reshape(-1)
        return m

    # -- layout -------------------------------------------------------------
    def _to_x(self, kernel):
        import tensorflow as tf

        p = self.plan
        x = tf.reshape(kernel, p.pre_shape)
        if p.perm is not None:
            x = tf.transpose(x, p.perm)
        return tf.reshape(x, p.x_shape)

    def _from_x(self, x):
        import tensorflow as tf

        p = self.plan
        if p.perm is not None:
            transposed = tuple(p.pre_shape[i] for i in p.perm)
            x = tf.reshape(x, transposed)
            x = tf.transpose(x, np.argsort(p.perm).tolist())
        return tf.reshape(x, p.kernel_shape)

    @staticmethod
    def _dct(x, axis, inverse):
        from dwt_keras.transforms.dct import dct

        return dct(x, axis, inverse)

    # -- GEMM path (see MATRIX_MAX_LEN) --------------------------------------
    def _const(self, m, dtype):
        import tensorflow as tf

        return tf.constant(m, dtype=dtype)

    def _forward_matrices(self, x):
        import tensorflow as tf

        p = self.plan
        dt = x.dtype
        if len(p.transform_axes) == 1 or p.basis == "dct" and len(p.transform_axes) == 1:
            n = p.x_shape[0]
            y = tf.matmul(self._const(self._mats[0][0], dt), tf.reshape(x, (n, -1)))
            return tf.reshape(y, [-1])
        h, w = p.x_shape[0], p.x_shape[1]
        x = tf.reshape(x, (h, w, -1))
        if p.basis == "dct":
            (ah, _), (aw, _) = self._mats
            y = tf.einsum("ih,hwr->iwr", self._const(ah, dt), x)
            y = tf.einsum("jw,iwr->ijr", self._const(aw, dt), y)
            return tf.reshape(y, [-1])
        details = []
        for (ah, _), (aw, _) in self._mats:
            y = tf.einsum("ih,hwr->iwr", self._const(ah, dt), x)
            y = tf.einsum("jw,iwr->ijr", self._const(aw, dt), y)
            h2, w2 = h // 2, w // 2
            # dwt2 order: cH = hi along axis 0 / lo along axis 1, cV = lo / hi, cD = hi / hi
            details.append([y[h2:, :w2], y[:h2, w2:], y[h2:, w2:]])
            x, h, w = y[:h2, :w2], h2, w2
        flat = [tf.reshape(x, [-1])]
        for det in reversed(details):
            flat.extend(tf.reshape(d, [-1]) for d in det)
        return tf.concat(flat, axis=0)

    def _inverse_matrices(self, flat):
        import tensorflow as tf

        p = self.plan
        dt = flat.dtype
        if len(p.transform_axes) == 1:
            n = p.x_shape[0]
            x = tf.matmul(self._const(self._mats[0][1], dt), tf.reshape(flat, (n, -1)))
            return tf.reshape(x, p.x_shape)
        h, w = p.x_shape[0], p.x_shape[1]
        if p.basis == "dct":
            (_, sh), (_, sw) = self._mats
            y = tf.reshape(flat, (h, w, -1))
            x = tf.einsum("ij,hjr->hir", self._const(sw, dt), y)
            x = tf.einsum("hi,iwr->hwr", self._const(sh, dt), x)
            return tf.reshape(x, p.x_shape)
        parts = tf.split(flat, self._band_sizes)
        r = int(np.prod(p.x_shape[2:]))
        hs = [h // 2 ** (l + 1) for l in range(p.level)]
        ws = [w // 2 ** (l + 1) for l in range(p.level)]
        x = tf.reshape(parts[0], (hs[-1], ws[-1], r))
        k = 1
        for lvl in reversed(range(p.level)):
            (_, sh), (_, sw) = self._mats[lvl]
            h2, w2 = hs[lvl], ws[lvl]
            ch, cv, cd = (tf.reshape(parts[k + i], (h2, w2, r)) for i in range(3))
            k += 3
            y = tf.concat([tf.concat([x, cv], axis=1), tf.concat([ch, cd], axis=1)], axis=0)
            x = tf.einsum("ij,hjr->hir", self._const(sw, dt), y)
            x = tf.einsum("hi,iwr->hwr", self._const(sh, dt), x)
        return tf.reshape(x, p.x_shape)

    # -- public -------------------------------------------------------------
    def forward(self, kernel):
        import tensorflow as tf

        from dwt_keras import wavelets

        p = self.plan
        kernel = tf.convert_to_tensor(kernel)
        if p.basis == "identity":
            return tf.reshape(kernel, [-1])
        x = self._to_x(kernel)
        if self._mats is not None:
            return self._forward_matrices(x)
        if p.basis == "dct":
            for a in p.transform_axes:
                x = self._dct(x, a, inverse=False)
            return tf.reshape(x, [-1])
        if len(p.transform_axes) == 1:
            coeffs = wavelets.wavedec(x, p.wavelet, level=p.level, mode=p.mode,
                                      axis=p.transform_axes[0])
            flat = [tf.reshape(c, [-1]) for c in coeffs]
        else:
            coeffs = wavelets.wavedec2(x, p.wavelet, level=p.level, mode=p.mode,
                                       axes=p.transform_axes)
            flat = [tf.reshape(coeffs[0], [-1])]
            for det in coeffs[1:]:
                flat.extend(tf.reshape(d, [-1]) for d in det)
        return tf.concat(flat, axis=0)

    def inverse(self, flat):
        import tensorflow as tf

        from dwt_keras import wavelets

        p = self.plan
        flat = tf.convert_to_tensor(flat)
        if p.basis == "identity":
            return tf.reshape(flat, p.kernel_shape)
        if self._mats is not None:
            return self._from_x(self._inverse_matrices(flat))
        if p.basis == "dct":
            x = tf.reshape(flat, p.x_shape)
            for a in reversed(p.transform_axes):
                x = self._dct(x, a, inverse=True)
            return self._from_x(x)
        parts = tf.split(flat, self._band_sizes)
        bands = [tf.reshape(b, s) for b, s in zip(parts, self._band_shapes)]
        if len(p.transform_axes) == 1:
            x = wavelets.waverec(bands, p.wavelet, mode=p.mode, axis=p.transform_axes[0])
        else:
            nested = [bands[0]] + [tuple(bands[i:i + 3]) for i in range(1, len(bands), 3)]
            x = wavelets.waverec2(nested, p.wavelet, mode=p.mode, axes=p.transform_axes)
        # odd lengths come back one sample longer (as in PyWavelets); crop to the kernel's size
        if tuple(x.shape) != tuple(p.x_shape):
            x = x[tuple(slice(0, n) for n in p.x_shape)]
        return self._from_x(x)


def relative_error_after_keep(weights, plan, keep_ratio):
    """Relative L2 error of keeping the top `keep_ratio` coefficients (a quick diagnostic)."""
    t = KernelTransform(plan)
    c = np.asarray(t.forward(weights))
    k = max(1, int(math.ceil(keep_ratio * c.size)))
    idx = np.argpartition(-np.abs(c), k - 1)[:k]
    m = np.zeros_like(c)
    m[idx] = c[idx]
    w2 = np.asarray(t.inverse(m))
    return float(np.linalg.norm(w2 - weights) / max(np.linalg.norm(weights), 1e-30))
