"""Learnable-wavelet linear layer (Wolter, Lin & Yao, ICANN 2020).

The layer computes, for one input vector `x` of width `n`,

    y = S W^-1 G P W B x

* `B` (input scale, length `input_dim`) and `S` (output scale, length `units`) are learnable
  diagonals, both initialised to one;
* `W` is a `levels`-level 1-D fast wavelet analysis in PyWavelets' `"zero"` boundary mode with
  learnable analysis filters `dec_lo`, `dec_hi`;
* `G` is a learnable diagonal over the `N_c` wavelet coefficients (initialised to one) and `P` a
  fixed permutation of the coefficients drawn from `seed`;
* `W^-1` is the matching multi-level synthesis with its own learnable filters `rec_lo`, `rec_hi`.

Every operator costs O(n L): the analysis and the synthesis are stride-2 (polyphase) convolutions
computed as a gather of length-L windows times a small `(L, 2)` filter matrix, the diagonals are
elementwise products and the permutation is a gather. No n x n matrix is ever formed.

The coefficient lengths follow PyWavelets' `"zero"` mode, `c_j = floor((c_{j-1} + L - 1) / 2)`,
and the synthesis crops every level back to the exact length of the level above, so with an
orthogonal (or biorthogonal) initial filter bank `W^-1 W = I` for any `n` and any number of
levels (compare PyWavelets' `wavedec`/`waverec`).
"""

import keras
import numpy as np
import pywt
from keras import ops

from dwt_keras.learnable._structured import StructuredDense
from dwt_keras.learnable._structured import check_positive_int as _check_positive_int

_RANDOM_INIT_NAMES = ("random",)


def discrete_wavelet_names():
    """The wavelet names accepted as `init_wavelet` (PyWavelets' discrete wavelets)."""
    return pywt.wavelist(kind="discrete")


def coefficient_lengths(n, filter_length, levels):
    """Lengths `[c_1, ..., c_J]` of the detail coefficients of a `"zero"`-mode wavelet analysis.

    `c_j = floor((c_{j-1} + L - 1) / 2)` with `c_0 = n`; the final approximation has length `c_J`.

    Args:
        n: signal length.
        filter_length: the filter length `L`.
        levels: the number of levels `J`.

    Returns:
        A list of `levels` integers.
    """
    lengths = []
    c = int(n)
    for _ in range(int(levels)):
        c = (c + filter_length - 1) // 2
        lengths.append(c)
    return lengths


def num_coefficients(n, filter_length, levels):
    """`N_c`: the total number of wavelet coefficients (all details plus the final approximation).

    Example: `num_coefficients(800, 6, 6) == 826`.
    """
    lengths = coefficient_lengths(n, filter_length, levels)
    return int(sum(lengths) + lengths[-1])


def max_levels(n, filter_length):
    """The deepest decomposition allowed for a length-`n` signal: `max(1, pywt.dwt_max_level(n, L))`.

    Beyond PyWavelets' maximum level the approximation is shorter than the filter and every
    further level only adds boundary coefficients; one level is always allowed.
    """
    return max(1, int(pywt.dwt_max_level(int(n), int(filter_length))))


def padded_filter_bank(wavelet, filter_length):
    """The analysis/synthesis filters of a PyWavelets wavelet, zero-padded to `filter_length` taps.

    The zeros are placed so that the padded bank still satisfies the two conditions of the
    wavelet loss exactly (and therefore reconstructs perfectly with this module's transforms):
    `dec_lo` and `rec_hi` get `P - q` leading zeros, `rec_lo` and `dec_hi` get `q` leading zeros,
    where `P = filter_length - len(filters)` and `q = P // 2`; the two high-pass filters change
    sign when `q` is odd (a high-pass filter's sign is arbitrary). An odd `P` would shift the
    filters by half a sample, which no zero padding can undo, so it is rejected.

    Args:
        wavelet: a discrete PyWavelets wavelet name, e.g. `"haar"`, `"db6"`.
        filter_length: the padded length `L`.

    Returns:
        A dict of float64 NumPy arrays `dec_lo, dec_hi, rec_lo, rec_hi`, each of length `L`.

    Raises:
        ValueError: unknown wavelet, filters longer than `filter_length`, or odd padding.
    """
    w = _get_discrete_wavelet(wavelet)
    base = w.dec_len
    if base > filter_length:
        raise ValueError(
            f"init_wavelet='{wavelet}' has {base}-tap filters, longer than "
            f"filter_length={filter_length}. Use filter_length >= {base}."
        )
    pad = filter_length - base
    if pad % 2:
        raise ValueError(
            f"filter_length={filter_length} would zero-pad the {base}-tap '{wavelet}' filters by an "
            f"odd number of taps ({pad}), which shifts them by half a sample and breaks perfect "
            f"reconstruction. Use filter_length = {base} + an even number, e.g. {filter_length + 1}."
        )
    q = pad // 2
    sign = -1.0 if q % 2 else 1.0

    def _pad(f, lead):
        return np.pad(np.asarray(f, dtype=np.float64), (lead, pad - lead))

    return {
        "dec_lo": _pad(w.dec_lo, pad - q),
        "dec_hi": sign * _pad(w.dec_hi, q),
        "rec_lo": _pad(w.rec_lo, q),
        "rec_hi": sign * _pad(w.rec_hi, pad - q),
    }


def random_filter_bank(filter_length, seed):
    """Four independent random filters, uniform in `[-a, a]` with `a = sqrt(3 / L)`.

    The scale gives each filter an expected squared norm of one, like an orthogonal filter.
    """
    rng = np.random.default_rng(seed)
    a = np.sqrt(3.0 / filter_length)
    names = ("dec_lo", "dec_hi", "rec_lo", "rec_hi")
    return {k: rng.uniform(-a, a, size=filter_length) for k in names}


def _get_discrete_wavelet(name):
    names = discrete_wavelet_names()
    if not isinstance(name, str) or name not in names:
        raise ValueError(
            f"Unknown init_wavelet {name!r}. Use 'random' or one of PyWavelets' discrete "
            f"wavelets: {', '.join(names)}."
        )
    return pywt.Wavelet(name)


def _full_convolution(a, b):
    """Full 1-D convolution of two short vectors (length len(a) + len(b) - 1), O(L^2)."""
    la = a.shape[0]
    out = None
    for i in range(la):
        term = ops.pad(a[i] * b, [[i, la - 1 - i]])
        out = term if out is None else out + term
    return out


def wavelet_filter_loss(dec_lo, dec_hi, rec_lo, rec_hi):
    """The two terms of the wavelet loss of a two-channel filter bank.

    * perfect reconstruction: `p = h0 * f0 + h1 * f1` (full convolutions, length `2L - 1`),
      `L_pr = sum_k (p_k - 2 delta_{k, L-1})^2`;
    * alias cancellation (`F0(z) = H1(-z)`, `F1(z) = -H0(-z)`), with `m[n] = (-1)^(L-1-n)`:
      `L_ac = sum_n (f0[n] - m[n] h1[n])^2 + sum_n (f1[n] + m[n] h0[n])^2`.

    Both are zero for orthogonal PyWavelets banks (haar, dbN, symN, coifN).

    Args:
        dec_lo, dec_hi, rec_lo, rec_hi: 1-D tensors of equal length `L` (`h0, h1, f0, f1`).

    Returns:
        A tuple `(L_pr, L_ac)` of scalar tensors.
    """
    length = dec_lo.shape[0]
    p = _full_convolution(dec_lo, rec_lo) + _full_convolution(dec_hi, rec_hi)
    target = np.zeros(2 * length - 1, dtype=np.float32)
    target[length - 1] = 2.0
    target = ops.cast(target, p.dtype)
    l_pr = ops.sum(ops.square(p - target))
    m = ops.cast((-1.0) ** (length - 1 - np.arange(length)), dec_lo.dtype)
    l_ac = ops.sum(ops.square(rec_lo - m * dec_hi)) + ops.sum(ops.square(rec_hi + m * dec_lo))
    return l_pr, l_ac


def _analysis_indices(n, filter_length):
    """Gather indices `(c, L)` of the analysis windows into the input padded by `L - 1` each side.

    PyWavelets' `"zero"` mode keeps the odd samples of the full convolution:
    `c[k] = sum_j h[j] x[2k + 1 - j]`, `k < floor((n + L - 1) / 2)`.
    """
    c = (n + filter_length - 1) // 2
    k = np.arange(c)[:, None]
    j = np.arange(filter_length)[None, :]
    return (2 * k + 1 - j + filter_length - 1).astype("int32")


def _synthesis_plan(c, n, filter_length):
    """Static gather plan of one synthesis level (polyphase form, no zero-stuffing).

    The synthesis is `out[i] = sum_k a[k] f[i + L - 2 - 2k]` (+ the same for the detail), the
    central part of the full convolution of the upsampled coefficients, cropped to length `n`.
    Output pairs `(out[2m], out[2m + 1])` depend on the coefficients `a[m - d]` for a few offsets
    `d`; with `j = 2d + p + L - 2` the tap of phase `p`.

    Returns:
        `(indices (M, D), pad_left, pad_right, taps (D, 2), M)`; `taps` is `L` where a phase has
        no tap at that offset (it indexes an appended zero).
    """
    length = filter_length
    pairs = (n + 1) // 2
    offsets = [d for d in range(-length, length + 1) if any(0 <= 2 * d + p + length - 2 < length for p in (0, 1))]
    pad_left = max(0, max(offsets))
    indices = np.arange(pairs)[:, None] - np.asarray(offsets)[None, :] + pad_left
    pad_right = max(0, int(indices.max()) - (c + pad_left) + 1)
    taps = np.full((len(offsets), 2), length, dtype="int32")
    for a, d in enumerate(offsets):
        for p in (0, 1):
            j = 2 * d + p + length - 2
            if 0 <= j < length:
                taps[a, p] = j
    return indices.astype("int32"), pad_left, pad_right, taps, pairs


def wavelet_analysis(x, dec_lo, dec_hi, levels):
    """Multi-level 1-D wavelet analysis in `"zero"` mode (equal to `pywt.wavedec(..., "zero")`).

    Each level gathers the length-`L` windows of the zero-padded signal at stride 2 and
    multiplies them by the `(L, 2)` matrix of the two filters: O(n L) work in three ops, which
    also compiles well with XLA.

    Args:
        x: tensor of shape `(batch, n)`.
        dec_lo, dec_hi: analysis filters of length `L`.
        levels: number of levels `J`.

    Returns:
        The list `[cA_J, cD_J, ..., cD_1]` of `(batch, c_j)` tensors.
    """
    return _apply_analysis(x, analysis_kernel(dec_lo, dec_hi), levels)


def analysis_kernel(dec_lo, dec_hi):
    """The `(L, 2)` matrix of the analysis filters used by every level."""
    return ops.stack([dec_lo, dec_hi], axis=-1)


def _apply_analysis(x, kernel, levels):
    length = kernel.shape[0]
    approx = x
    details = []
    for _ in range(levels):
        indices = _analysis_indices(approx.shape[-1], length)
        padded = ops.pad(approx, [[0, 0], [length - 1, length - 1]])
        both = ops.matmul(ops.take(padded, indices, axis=1), kernel)  # (batch, c, 2)
        approx = both[..., 0]
        details.append(both[..., 1])
    return [approx] + details[::-1]


def synthesis_kernels(rec_lo, rec_hi, coefficient_sizes, lengths):
    """The per-level `(2 D, 2)` polyphase matrices of the synthesis filters.

    Args:
        rec_lo, rec_hi: synthesis filters of length `L`.
        coefficient_sizes: the coefficient length entering each level, `[c_J, ..., c_1]`.
        lengths: the output length of each level, `[c_{J-1}, ..., c_1, n]`.
    """
    length = rec_lo.shape[0]
    bank = ops.stack([rec_lo, rec_hi], axis=0)  # (2, L)
    bank = ops.concatenate([bank, ops.zeros((2, 1), bank.dtype)], axis=1)  # tap L is a zero
    kernels = []
    for c, target_length in zip(coefficient_sizes, lengths):
        _, _, _, taps, _ = _synthesis_plan(c, target_length, length)
        kernel = ops.transpose(ops.take(bank, taps, axis=1), (1, 0, 2))  # (D, 2 channels, 2 phases)
        kernels.append(ops.reshape(kernel, (2 * taps.shape[0], 2)))
    return kernels


def _apply_synthesis(coeffs, kernels, lengths, filter_length):
    approx = coeffs[0]
    for detail, kernel, target_length in zip(coeffs[1:], kernels, lengths):
        c = detail.shape[-1]
        indices, pad_left, pad_right, _, pairs = _synthesis_plan(c, target_length, filter_length)
        pair = ops.stack([approx, detail], axis=-1)  # (batch, c, 2)
        pair = ops.pad(pair, [[0, 0], [pad_left, pad_right], [0, 0]])
        frames = ops.take(pair, indices, axis=1)  # (batch, M, D, 2)
        out = ops.matmul(ops.reshape(frames, (-1, pairs, 2 * indices.shape[1])), kernel)
        approx = ops.reshape(out, (-1, 2 * pairs))[:, :target_length]
    return approx


def wavelet_synthesis(coeffs, rec_lo, rec_hi, lengths):
    """Multi-level 1-D wavelet synthesis in `"zero"` mode (equal to `pywt.waverec(..., "zero")`).

    Each level is computed in polyphase form (see `_synthesis_plan`): a gather of coefficient
    windows and one small matmul produce the even and odd output samples at once. Every level
    is cropped to the exact length of the level above (the synthesis can be one sample longer).

    Args:
        coeffs: `[cA_J, cD_J, ..., cD_1]`, tensors of shape `(batch, c_j)`.
        rec_lo, rec_hi: synthesis filters of length `L`.
        lengths: the target length of every level's output, `[c_{J-1}, ..., c_1, n]`.

    Returns:
        A `(batch, n)` tensor.
    """
    sizes = [c.shape[-1] for c in coeffs[1:]]
    kernels = synthesis_kernels(rec_lo, rec_hi, sizes, lengths)
    return _apply_synthesis(coeffs, kernels, lengths, rec_lo.shape[0])


def _check_seed(seed):
    if seed is None:
        # Draw one now and keep it in the config, so a saved layer rebuilds the same permutation.
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    return _check_positive_int("seed", seed, minimum=0)


@keras.saving.register_keras_serializable(package="dwt_keras")
class WaveletDense(StructuredDense):
    """Linear layer parametrised by a learnable fast wavelet transform: `y = S W^-1 G P W B x`.

    Replaces a dense `n x n` matrix (`n^2` parameters) with `2n + N_c + 4L` parameters and
    O(n L) work (Wolter, Lin & Yao, "Deep Neural Network Compression via Learnable Wavelet
    Transforms", ICANN 2020). See the module docstring for the factors.

    Width scheme (`input_dim != units`): the layer works at width `n = max(input_dim, units)`.
    The input is scaled by `B` (length `input_dim`), zero-padded to `n`, transformed, truncated to
    the first `units` entries and scaled by `S` (length `units`). Parameters:
    `input_dim + units + N_c(n, L, J) + 4L` (+ `units` with `use_bias`), which is
    `2n + N_c + 4L` for a square layer (n=800, L=6, J=6: 2450, N_c = 826).

    The wavelet loss `L_pr + L_ac` of the current filters (see `wavelet_filter_loss`) is added
    with `layer.add_loss(wavelet_loss_weight * loss)` on every call and tracked by the metric
    `<layer name>_wavelet_loss` (unweighted), which `model.fit` reports.

    Args:
        units: output width.
        levels: number of wavelet levels `J`, at most `max(1, pywt.dwt_max_level(n, L))`;
            `None` uses that maximum for the actual width.
        filter_length: length `L` (>= 2) of each of the four learnable filters.
        init_wavelet: a discrete PyWavelets wavelet name whose filters (zero-padded to
            `filter_length`; see `padded_filter_bank`) initialise the filter bank, or `"random"`
            (or `None`) for seeded random filters.
        wavelet_loss_weight: non-negative weight of the wavelet loss (the paper: 1.0);
            0 disables it.
        mode: boundary mode. Only `"zero"` (the paper's) is implemented.
        use_bias: add a learnable bias of length `units` (the paper's layer has none).
        seed: integer seed of the fixed coefficient permutation and of random filters. `None`
            draws one at construction and stores it in the config.
        input_dim: optional input width, to check `levels` at construction when the input is
            wider than `units`; otherwise it is checked against `units` now and the actual width
            at build time.
        bias_initializer: initializer of the bias.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a tensor of shape `(..., input_dim)`.

    Example:

    ```python
    layer = WaveletDense(800, levels=6, filter_length=6, init_wavelet="haar", seed=0)
    y = layer(np.random.rand(4, 800).astype("float32"))  # (4, 800), 2450 parameters
    ```
    """

    def __init__(
        self,
        units,
        levels=None,
        filter_length=6,
        init_wavelet="haar",
        wavelet_loss_weight=1.0,
        mode="zero",
        use_bias=False,
        seed=0,
        input_dim=None,
        bias_initializer="zeros",
        _standalone=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _check_positive_int("units", units)
        self.filter_length = _check_positive_int("filter_length", filter_length, minimum=2)
        self.levels = None if levels is None else _check_positive_int("levels", levels)
        if input_dim is not None:
            input_dim = _check_positive_int("input_dim", input_dim)
        self.input_dim = input_dim
        if mode != "zero":
            raise ValueError(
                f"mode={mode!r} is not supported: WaveletDense implements the paper's 'zero' "
                "boundary mode only. Valid choices: 'zero'."
            )
        self.mode = mode
        if init_wavelet is None or init_wavelet in _RANDOM_INIT_NAMES:
            init_wavelet = "random"
        else:
            # Validates the name and the padding now, before any weights exist.
            padded_filter_bank(init_wavelet, self.filter_length)
        self.init_wavelet = init_wavelet
        if isinstance(wavelet_loss_weight, bool) or not isinstance(
            wavelet_loss_weight, (int, float, np.floating, np.integer)
        ):
            raise ValueError(f"wavelet_loss_weight must be a number >= 0, got {wavelet_loss_weight!r}.")
        if not np.isfinite(wavelet_loss_weight) or wavelet_loss_weight < 0:
            raise ValueError(f"wavelet_loss_weight must be a finite number >= 0, got {wavelet_loss_weight!r}.")
        self.wavelet_loss_weight = float(wavelet_loss_weight)
        self.use_bias = bool(use_bias)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed = _check_seed(seed)
        self._check_levels(max(self.units, self.input_dim or 0))
        # Structured sub-layers of a recurrent cell must not add losses inside the time loop:
        # the recurrent layer adds them once per sequence instead (private flag, not in config).
        self._add_loss_in_call = bool(_standalone)
        if self._add_loss_in_call and self.wavelet_loss_weight > 0:
            self.wavelet_loss_tracker = keras.metrics.Mean(name=f"{self.name}_wavelet_loss")

    def _check_levels(self, width):
        deepest = max_levels(width, self.filter_length)
        if self.levels is not None and self.levels > deepest:
            raise ValueError(
                f"levels={self.levels} is too deep for width {width} with filter_length="
                f"{self.filter_length}: at most pywt.dwt_max_level({width}, {self.filter_length}) = "
                f"{deepest} levels are possible"
                + (" (pass input_dim= if the input is wider than units)." if self.input_dim is None else ".")
            )

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError("WaveletDense needs a known last input dimension.")
        in_dim = int(in_dim)
        if self.input_dim is not None and in_dim != self.input_dim:
            raise ValueError(f"Expected input width input_dim={self.input_dim}, got {in_dim}.")
        self._in_dim = in_dim
        self.width = max(in_dim, self.units)
        self._check_levels(self.width)
        self.num_levels = self.levels or max_levels(self.width, self.filter_length)
        self._lengths = coefficient_lengths(self.width, self.filter_length, self.num_levels)
        self.num_coefficients = int(sum(self._lengths) + self._lengths[-1])
        self.permutation = np.random.default_rng(self.seed).permutation(self.num_coefficients).astype("int32")

        if self.init_wavelet == "random":
            bank = random_filter_bank(self.filter_length, self.seed)
        else:
            bank = padded_filter_bank(self.init_wavelet, self.filter_length)
        for key in ("dec_lo", "dec_hi", "rec_lo", "rec_hi"):
            value = bank[key].astype("float32")
            var = self.add_weight(
                name=key,
                shape=(self.filter_length,),
                initializer=keras.initializers.Constant(value),
                trainable=True,
            )
            setattr(self, key, var)
        self.input_scale = self.add_weight(name="input_scale", shape=(in_dim,), initializer="ones")
        self.coefficient_scale = self.add_weight(
            name="coefficient_scale", shape=(self.num_coefficients,), initializer="ones"
        )
        self.output_scale = self.add_weight(name="output_scale", shape=(self.units,), initializer="ones")
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer)
        else:
            self.bias = None

    def wavelet_loss_terms(self):
        """`(L_pr, L_ac)` of the current filters (scalar tensors)."""
        return wavelet_filter_loss(
            ops.convert_to_tensor(self.dec_lo),
            ops.convert_to_tensor(self.dec_hi),
            ops.convert_to_tensor(self.rec_lo),
            ops.convert_to_tensor(self.rec_hi),
        )

    def wavelet_loss(self):
        """`L_pr + L_ac` of the current filters (unweighted scalar tensor)."""
        l_pr, l_ac = self.wavelet_loss_terms()
        return l_pr + l_ac

    _prepared_weights = ("coefficient_scale",)

    def prepare(self, dtype=None):
        """`StructuredDense.prepare` plus the analysis and synthesis filter matrices."""
        dtype = dtype or self.compute_dtype
        prepared = super().prepare(dtype)
        lengths = self._lengths
        prepared["analysis"] = analysis_kernel(ops.cast(self.dec_lo, dtype), ops.cast(self.dec_hi, dtype))
        prepared["synthesis"] = synthesis_kernels(
            ops.cast(self.rec_lo, dtype), ops.cast(self.rec_hi, dtype), lengths[::-1], lengths[::-1][1:] + [self.width]
        )
        return prepared

    def analyze(self, x, prepared=None):
        """`W x`: the flat coefficient vector `[cA_J, cD_J, ..., cD_1]`, shape `(batch, N_c)`.

        Args:
            x: a `(batch, width)` tensor (already scaled and zero-padded).
            prepared: optional result of `prepare()`.
        """
        prepared = prepared or self.prepare(x.dtype)
        return ops.concatenate(_apply_analysis(x, prepared["analysis"], self.num_levels), axis=-1)

    def synthesize(self, flat, prepared=None):
        """`W^-1 c`: the multi-level synthesis of a `(batch, N_c)` coefficient vector."""
        prepared = prepared or self.prepare(flat.dtype)
        sizes = [self._lengths[-1]] + self._lengths[::-1]
        parts = ops.split(flat, np.cumsum(sizes)[:-1].tolist(), axis=-1)
        targets = self._lengths[::-1][1:] + [self.width]
        return _apply_synthesis(parts, prepared["synthesis"], targets, self.filter_length)

    def transform(self, x, prepared):
        """`W^-1 G P W x` on a `(batch, width)` tensor, given `prepare()`'s tensors."""
        flat = self.analyze(x, prepared)
        flat = ops.take(flat, self.permutation, axis=-1) * prepared["coefficient_scale"]
        return self.synthesize(flat, prepared)

    def call(self, inputs):
        y = super().call(inputs)
        if self._add_loss_in_call and self.wavelet_loss_weight > 0:
            loss = self.wavelet_loss()
            self.add_loss(self.wavelet_loss_weight * loss)
            self.wavelet_loss_tracker.update_state(loss)
        return y

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "levels": self.levels,
                "filter_length": self.filter_length,
                "init_wavelet": self.init_wavelet,
                "wavelet_loss_weight": self.wavelet_loss_weight,
                "mode": self.mode,
                "use_bias": self.use_bias,
                "seed": self.seed,
                "input_dim": self.input_dim,
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config

    def filters(self):
        """The current filters as a dict of NumPy arrays (`dec_lo, dec_hi, rec_lo, rec_hi`)."""
        return {k: keras.ops.convert_to_numpy(getattr(self, k)) for k in ("dec_lo", "dec_hi", "rec_lo", "rec_hi")}
