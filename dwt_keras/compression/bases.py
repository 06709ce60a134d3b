"""Per-layer transform plans: which basis, along which axes of a kernel, with how many levels.

A basis is only useful where the weights have geometry (see the project's methods notes, §1):

* a ``Dense`` layer fed by a ``Flatten`` of an ``(H, W, C)`` feature map: each unit's input weights
  form an ``H x W x C`` receptive field; the transform runs over ``H`` and ``W`` (view
  ``"receptive_field_hw"``);
* a convolution kernel ``(kh, kw, cin, cout)``: over the spatial axes ``kh, kw`` when they allow at
  least one level (view ``"conv_spatial"``);
* any other ``Dense`` kernel ``(n_in, n_out)``: 1-D over the input axis (view ``"input_axis"``).

Levels. With ``mode="periodization"`` (the default) and a length that stays even at every level,
an orthogonal wavelet gives an orthogonal matrix and a biorthogonal one an invertible square
matrix: the coefficient mask is then held *exactly* (the projection ``B^-1(M * B(W))`` is
idempotent). The automatic level is therefore the largest level that keeps every transformed
length even and does not exceed ``pywt.dwt_max_level``. A requested ``level`` above that is
lowered, with a warning. Other modes (or odd lengths) make the transform redundant: allowed, with a
warning, but the mask is then held only approximately during retraining (the final weights and the
stored file still agree exactly, see ``storage.save_compressed``).

Small kernels (documented fallback). When the spatial axes allow no level (every 3x3 or 5x5
kernel: odd sizes; ``pywt.dwt_max_level(3, db2) == 0``), a zero-level "DWT" would be plain
magnitude pruning in disguise. Instead, with a ``UserWarning`` naming the layer:

* ``small_kernel_fallback="flatten"`` (default): 1-D over the flattened ``cin * kh * kw`` axis
  (``C * H * W`` for a receptive field), spatial taps fastest so that the first levels combine
  spatial neighbours; if that length allows no level either, identity;
* ``small_kernel_fallback="identity"``: no transform (magnitude pruning), stated in the plan.

The ``dct`` basis (orthonormal DCT-II) has no levels and runs over the same axes, including 3x3.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

BASIS_KINDS = ("identity", "dct", "wavelet")
FALLBACKS = ("flatten", "identity")
VIEWS = (
    "none",
    "input_axis",
    "receptive_field_hw",
    "receptive_field_flattened",
    "conv_spatial",
    "conv_flattened",
)
#: Layers whose ``kernel`` is compressed (others keep every weight dense).
COMPRESSIBLE_CLASSES = ("Dense", "Conv1D", "Conv2D", "EinsumDense")


def basis_kind(basis):
    """Returns ``"identity"``, ``"dct"`` or ``"wavelet"`` for a basis name (validated)."""
    if not isinstance(basis, str) or not basis.strip():
        raise ValueError(
            f"basis/wavelet must be a name: 'identity', 'dct' or a discrete wavelet, got {basis!r}."
        )
    name = basis.strip().lower()
    if name in ("identity", "none"):
        return "identity"
    if name == "dct":
        return "dct"
    from dwt_keras import wavelets

    try:
        wavelets.get_wavelet(name)
    except ValueError as e:
        raise ValueError(
            f"Unknown basis {basis!r}: use 'identity' (magnitude pruning), 'dct', or a discrete "
            f"wavelet. {e}"
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


def _coeff_len(n, wavelet, mode):
    import pywt

    return pywt.dwt_coeff_len(int(n), _dec_len(wavelet), mode)


@dataclasses.dataclass
class LayerPlan:
    """How one kernel is transformed. JSON-ready through `to_dict` / `from_dict`.

    Attributes:
        layer: layer name.
        layer_class: e.g. ``"Dense"``, ``"Conv2D"``.
        kernel_shape: the kernel's shape.
        basis: ``"identity"``, ``"dct"`` or ``"wavelet"``.
        wavelet: wavelet name (``None`` unless ``basis == "wavelet"``).
        mode: signal-extension mode (wavelets only).
        level: decomposition level (0 for identity/dct).
        view: one of `VIEWS`: how the kernel is laid out before the transform.
        axes: human-readable description of the transformed axes.
        pre_shape, perm, x_shape: the kernel is reshaped to ``pre_shape``, transposed by ``perm``
            and reshaped to ``x_shape``; the transform runs over ``transform_axes`` of that.
        transform_axes: axes of ``x_shape`` that are transformed.
        n_weights, n_coefficients: sizes before / after the transform.
        redundant: True if the transform has more coefficients than weights (mask then held
            approximately).
        fallback: why a fallback was used (``None`` if the basis applied as requested).
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

    def to_dict(self):
        d = dataclasses.asdict(self)
        for k in ("kernel_shape", "pre_shape", "x_shape", "transform_axes"):
            d[k] = [int(v) for v in d[k]]
        d["perm"] = None if self.perm is None else [int(v) for v in self.perm]
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


# --------------------------------------------------------------------------- #
# Geometry detection
# --------------------------------------------------------------------------- #
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


# --------------------------------------------------------------------------- #
# Planning
# --------------------------------------------------------------------------- #
def _identity_plan(layer, cls_name, kshape, fallback=None, view="none", axes="none"):
    n = int(np.prod(kshape))
    return LayerPlan(layer, cls_name, tuple(kshape), "identity", None, None, 0, view, axes,
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


def _make_plan(name, cls_name, kshape, kind, wavelet, mode, view, pre_shape, perm, x_shape,
               axes, level, axes_text, fallback=None):
    n = int(np.prod(kshape))
    if kind == "wavelet":
        ncoef = _wavelet_sizes(x_shape, axes, wavelet, mode, level)
    else:
        ncoef = n
    return LayerPlan(name, cls_name, tuple(kshape), kind,
                     wavelet if kind == "wavelet" else None,
                     mode if kind == "wavelet" else None,
                     int(level) if kind == "wavelet" else 0, view, axes_text,
                     tuple(pre_shape), perm, tuple(x_shape), tuple(axes), n, int(ncoef),
                     bool(ncoef > n), fallback)


def _candidate_views(cls_name, kshape, geometry):
    """Preferred and fallback views of a kernel: lists of (view, pre_shape, perm, x_shape, axes, text)."""
    if cls_name == "Conv2D" and len(kshape) == 4:
        kh, kw, cin, cout = kshape
        spatial = ("conv_spatial", kshape, None, kshape, (0, 1),
                   f"kh,kw ({kh}x{kw}) of each {kh}x{kw} filter, per (cin, cout)")
        flat = ("conv_flattened", kshape, (2, 0, 1, 3), (cin * kh * kw, cout), (0,),
                f"flattened cin*kh*kw ({cin}*{kh}*{kw}={cin * kh * kw}, spatial fastest), per cout")
        return spatial, flat
    if cls_name == "Conv1D" and len(kshape) == 3:
        k, cin, cout = kshape
        spatial = ("conv_spatial", kshape, None, kshape, (0,), f"k ({k}) of each filter, per (cin, cout)")
        flat = ("conv_flattened", kshape, (1, 0, 2), (cin * k, cout), (0,),
                f"flattened cin*k ({cin * k}, taps fastest), per cout")
        return spatial, flat
    if len(kshape) == 2 and geometry is not None:
        h, w, c = geometry
        n_out = kshape[1]
        pre = (h, w, c, n_out)
        spatial = ("receptive_field_hw", pre, None, pre, (0, 1),
                   f"H,W ({h}x{w}) of each unit's {h}x{w}x{c} receptive field")
        flat = ("receptive_field_flattened", pre, (2, 0, 1, 3), (c * h * w, n_out), (0,),
                f"flattened C*H*W ({c}*{h}*{w}={c * h * w}, spatial fastest), per unit")
        return spatial, flat
    if len(kshape) == 2:
        n_in, n_out = kshape
        view = ("input_axis", kshape, None, kshape, (0,), f"input axis ({n_in}), per unit")
        return view, None
    return None, None


def plan_layer(layer, basis="haar", mode="periodization", level=None,
               small_kernel_fallback="flatten", geometry="auto", warn=True):
    """Plans the transform of one layer's kernel.

    Args:
        layer: a built Keras layer with a ``kernel``.
        basis: ``"identity"``, ``"dct"`` or a discrete wavelet name.
        mode: signal-extension mode (wavelets).
        level: ``None`` for the largest exact level, or a requested level (lowered with a warning
            where the kernel is too small).
        small_kernel_fallback: ``"flatten"`` or ``"identity"`` (see the module docstring).
        geometry: ``"auto"`` (detect a preceding ``Flatten``), ``None`` (plain 1-D), or an
            explicit ``(H, W, C)`` whose product is the kernel's input size.
        warn: emit ``UserWarning`` for fallbacks and lowered levels.

    Returns:
        A `LayerPlan`.
    """
    from dwt_keras import wavelets

    kind = basis_kind(basis)
    wavelet = canonical_basis(basis) if kind == "wavelet" else None
    mode = wavelets.validate_mode(mode)
    if small_kernel_fallback not in FALLBACKS:
        raise ValueError(
            f"Unknown small_kernel_fallback {small_kernel_fallback!r}; valid: {FALLBACKS}."
        )
    if level is not None and (isinstance(level, bool) or not isinstance(level, (int, np.integer))
                              or level < 1):
        raise ValueError(f"level must be a positive integer or None (automatic), got {level!r}.")
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        raise ValueError(f"Layer '{layer.name}' has no kernel to compress.")
    kshape = tuple(int(s) for s in kernel.shape)
    cls_name = type(layer).__name__

    if geometry == "auto":
        geo = _flatten_source_shape(layer) if len(kshape) == 2 else None
    elif geometry is None:
        geo = None
    else:
        geo = tuple(int(g) for g in geometry)
        if len(geo) == 2:
            geo = (*geo, 1)
        if len(geo) != 3 or len(kshape) != 2 or int(np.prod(geo)) != kshape[0]:
            raise ValueError(
                f"Layer '{layer.name}': geometry {geometry} does not match its kernel {kshape} "
                "(need (H, W[, C]) with H*W*C equal to the kernel's input size)."
            )

    preferred, fallback_view = _candidate_views(cls_name, kshape, geo)
    if preferred is None:
        return _identity_plan(layer.name, cls_name, kshape,
                              fallback=f"kernel of shape {kshape} has no known geometry")
    if kind == "identity":
        return _identity_plan(layer.name, cls_name, kshape)
    view, pre, perm, x_shape, axes, text = preferred
    if kind == "dct":
        return _make_plan(layer.name, cls_name, kshape, "dct", None, None, view, pre, perm,
                          x_shape, axes, 0, text)

    lengths = [x_shape[a] for a in axes]
    max_lvl, redundant = exact_level(lengths, wavelet, mode)
    if max_lvl >= 1:
        use = max_lvl if level is None else min(int(level), max_lvl)
        if level is not None and use < level and warn:
            warnings.warn(
                f"Layer '{layer.name}': level {level} requested but the axes {lengths} allow at "
                f"most {max_lvl} exact level(s) of {wavelet}; using {use}.",
                UserWarning, stacklevel=2,
            )
        if redundant and warn:
            warnings.warn(
                f"Layer '{layer.name}': mode '{mode}' with {wavelet} is a redundant transform; "
                "the coefficient mask is held only approximately during retraining "
                "(use mode='periodization' for an exact hold).",
                UserWarning, stacklevel=2,
            )
        return _make_plan(layer.name, cls_name, kshape, "wavelet", wavelet, mode, view, pre, perm,
                          x_shape, axes, use, text)

    # The preferred axes allow no level: documented fallback, never a silent zero-level DWT.
    reason = (f"{view} axes {lengths} allow no exact level of {wavelet} "
              f"(dwt_max_level/odd length)")
    if small_kernel_fallback == "flatten" and fallback_view is not None:
        fview, fpre, fperm, fx, faxes, ftext = fallback_view
        flvl, fred = exact_level([fx[faxes[0]]], wavelet, mode)
        if flvl >= 1:
            use = flvl if level is None else min(int(level), flvl)
            if warn:
                warnings.warn(
                    f"Layer '{layer.name}': {reason}; falling back to a 1-D {wavelet} transform "
                    f"over the {ftext} with {use} level(s).",
                    UserWarning, stacklevel=2,
                )
            return _make_plan(layer.name, cls_name, kshape, "wavelet", wavelet, mode, fview, fpre,
                              fperm, fx, faxes, use, ftext,
                              fallback=f"{reason}; used {fview}")
    if warn:
        warnings.warn(
            f"Layer '{layer.name}': {reason}; falling back to the identity basis (plain "
            "magnitude pruning) for this layer.",
            UserWarning, stacklevel=2,
        )
    return _identity_plan(layer.name, cls_name, kshape, fallback=f"{reason}; used identity")


def compressible_layers(model, min_kernel_size=256, layers=None, exclude=()):
    """Layers whose kernel would be compressed, in model order.

    Args:
        model: a built Keras model.
        min_kernel_size: kernels with fewer weights stay dense.
        layers: an explicit list of layer names (overrides the size rule); unknown names raise.
        exclude: names never compressed.
    """
    all_layers = _flatten_layers(model)
    by_name = {l.name: l for l in all_layers}
    if layers is not None:
        unknown = [n for n in layers if n not in by_name]
        if unknown:
            raise ValueError(
                f"Unknown layer name(s) {unknown}; layers with a kernel: "
                f"{[l.name for l in all_layers if getattr(l, 'kernel', None) is not None]}."
            )
        chosen = [by_name[n] for n in layers]
        bad = [l.name for l in chosen if getattr(l, "kernel", None) is None]
        if bad:
            raise ValueError(f"Layer(s) {bad} have no kernel to compress.")
        return [l for l in chosen if l.name not in set(exclude)]
    out = []
    for l in all_layers:
        k = getattr(l, "kernel", None)
        if k is None or type(l).__name__ not in COMPRESSIBLE_CLASSES or l.name in set(exclude):
            continue
        if int(np.prod(k.shape)) >= int(min_kernel_size):
            out.append(l)
    return out


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


def plan_model(model, basis="haar", mode="periodization", level=None, min_kernel_size=256,
               layers=None, exclude=(), layer_overrides=None, small_kernel_fallback="flatten",
               warn=True):
    """Plans every compressed kernel of `model`.

    Args:
        model: a built Keras model.
        basis: ``"identity"``, ``"dct"`` or a discrete wavelet name, for all layers.
        mode: signal-extension mode (wavelets).
        level: ``None`` (largest exact level per layer) or a requested level.
        min_kernel_size: kernels with fewer weights stay dense (biases and normalisation weights
            always stay dense).
        layers: explicit list of layer names to compress (default: by size).
        exclude: layer names never compressed.
        layer_overrides: ``{layer_name: {"basis"|"wavelet", "mode", "level", "geometry",
            "small_kernel_fallback"}}`` per-layer settings; ``{"skip": True}`` leaves it dense.
        small_kernel_fallback: ``"flatten"`` or ``"identity"``.
        warn: emit warnings for fallbacks.

    Returns:
        A list of `LayerPlan`, in model order.

    Example:

    >>> import keras
    >>> from dwt_keras.models import lenet300
    >>> model = lenet300()
    >>> [p.view for p in plan_model(model, "haar")]
    ['receptive_field_hw', 'input_axis', 'input_axis']
    """
    basis_kind(basis)
    from dwt_keras import wavelets

    wavelets.validate_mode(mode)
    overrides = dict(layer_overrides or {})
    names = {l.name for l in _flatten_layers(model)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"layer_overrides name unknown layer(s) {unknown}; layers: {sorted(names)}.")
    allowed = {"basis", "wavelet", "mode", "level", "geometry", "small_kernel_fallback", "skip"}
    for name, ov in overrides.items():
        bad = set(ov) - allowed
        if bad:
            raise ValueError(f"layer_overrides['{name}'] has unknown keys {sorted(bad)}; "
                             f"valid: {sorted(allowed)}.")
    chosen = compressible_layers(model, min_kernel_size, layers, exclude)
    extra = [l for l in _flatten_layers(model) if l.name in overrides and l not in chosen
             and not overrides[l.name].get("skip") and getattr(l, "kernel", None) is not None]
    chosen_names = {l.name for l in chosen + extra}
    plans = []
    for l in _flatten_layers(model):
        if l.name not in chosen_names:
            continue
        ov = overrides.get(l.name, {})
        if ov.get("skip"):
            continue
        plans.append(plan_layer(
            l,
            basis=ov.get("basis", ov.get("wavelet", basis)),
            mode=ov.get("mode", mode),
            level=ov.get("level", level),
            small_kernel_fallback=ov.get("small_kernel_fallback", small_kernel_fallback),
            geometry=ov.get("geometry", "auto"),
            warn=warn,
        ))
    return plans


def format_plan(plans):
    """A readable table of the per-layer plan."""
    rows = [("layer", "kernel", "basis", "lvl", "view / axes", "coeffs", "note")]
    for p in plans:
        note = []
        if p.fallback:
            note.append("FALLBACK: " + p.fallback)
        if p.redundant:
            note.append("redundant (approximate hold)")
        rows.append((p.layer, "x".join(map(str, p.kernel_shape)), p.basis_name, str(p.level),
                     f"{p.view}: {p.axes}", str(p.n_coefficients), "; ".join(note)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + ("  " + r[-1] if r[-1] else ""))
    lines.insert(1, "-" * len(lines[0]))
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
