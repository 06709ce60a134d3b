"""Dense layers that hold and multiply only their kept wavelet coefficients.

A ``Dense`` kernel ``W`` (``n_in x n_out``) compressed along its input axes is ``W = S(C)``: the
synthesis ``S`` of the plan (`bases.KernelTransform.inverse`) applied, per output unit, to that
unit's coefficient column of ``C`` (``n_coef_in x n_out``, sparse). Hence

    y = W^T x = C^T (S^T x),

and ``S^T`` is the analysis of the plan's basis for an orthogonal wavelet, the DCT or the
identity, and for a biorthogonal wavelet the *dual* analysis (the adjoint of the synthesis: the
reconstruction filters, time-reversed, used as decomposition filters). `WaveletDomainDense`
computes exactly that: the input transform once per sample (``dwt_keras.wavelets`` over the plan's
axes: the 28x28 receptive field of LeNet-300-100's first layer, the input axis of the others)
followed by a sparse product with the kept coefficients, which are its only kernel weights
(values, plus their positions as integer weights). Trained in this form the kept coefficients
get their gradients directly: no projection after each optimizer step, and the layer is also the
deployable form (memory and multiply-adds proportional to the kept coefficients plus the
transform).

Supported plans: ``Dense`` kernels whose transform runs over the input side
(views ``input_axis``, ``receptive_field_hw``, ``receptive_field_flattened``, and the identity
basis), in a non-redundant mode. The planner's other views -- ``conv_spatial`` and
``conv_flattened`` of ``Conv1D``/``Conv2D`` kernels -- and redundant transforms stay *masked
dense*: the layer keeps its class and its reconstructed kernel, the mask is held as before, and
the conversion records why (see `to_coefficient_domain`). Why no coefficient-domain
convolution: a convolution with a kernel transformed over its taps would multiply the kept
coefficients with the transformed *patches* of the input (one transform per output position),
i.e. an im2col of the input, the transform of every patch and a sparse product; measured in
``benchmarks/bench_coefficient_domain.py`` it does not pay against the dense convolution (see
BENCHMARKS.md).

The sparse product (``product=``), chosen per layer by `choose_product` from measurements on this
project's CPU (``benchmarks/results/coefficient_domain_products.json``):

* ``"gather"``: gather the transformed inputs at the kept positions, scale, segment-sum per unit;
* ``"rows"``: gather the input coefficients that any kept coefficient uses, scatter the kept
  values into that (smaller) dense block for the step and multiply (a dense-masked product
  restricted to the used rows);
* ``"dense"``: scatter into the full ``n_coef_in x n_out`` matrix and multiply.

On a CPU whose matrix products run at tens of GFLOP/s (oneDNN), the dense-masked products win
at LeNet sizes down to 1 % keep; what the coefficient form saves in training is the projection
of every kernel after each step and the optimizer's work on the full kernels.

Whatever the product, the layer *holds* only ``values`` (float32), ``positions`` (int32) and
``rows`` (int32, the used input coefficients); the dense blocks of ``"rows"``/``"dense"`` exist
only during a call.

Example:

>>> from dwt_keras.compression import compress_model                      # doctest: +SKIP
>>> state = compress_model(model, keep_ratio=0.03, basis="haar")          # doctest: +SKIP
>>> coeff_model = to_coefficient_domain(model)                            # doctest: +SKIP
>>> coeff_model.compile("adam", "sparse_categorical_crossentropy")        # doctest: +SKIP
>>> coeff_model.fit(x, y)         # trains the kept coefficients only      # doctest: +SKIP
>>> dense_again = to_dense(coeff_model)   # with its CompressionState      # doctest: +SKIP
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from dwt_keras.compression import bases, constraints

PRODUCTS = ("auto", "gather", "rows", "dense")
#: Views whose transform runs over the kernel's input axes (the output axis stays last).
INPUT_SIDE_VIEWS = ("input_axis", "receptive_field_hw", "receptive_field_flattened")
#: `choose_product`: the used-rows block is multiplied when it has at most this share of rows.
ROWS_MAX_FRACTION = 0.3
_RECORD_ATTR = "_dwt_coefficient_domain_record"


# --------------------------------------------------------------------------- #
# Which plans the coefficient form supports
# --------------------------------------------------------------------------- #
def unsupported_reason(plan):
    """``None`` if `plan`'s kernel can run in the coefficient domain, else the reason (text).

    Args:
        plan: a `bases.LayerPlan`.
    """
    p = plan
    if p.layer_class != "Dense" or len(p.kernel_shape) != 2:
        if p.layer_class in ("Conv1D", "Conv2D"):
            return (f"{p.layer_class} kernel (view {p.view}): a coefficient-domain convolution "
                    "needs the transform of every input patch (im2col); measured not to pay "
                    "against the dense convolution, so the kernel stays masked dense")
        return f"{p.layer_class} kernel of shape {p.kernel_shape}: only Dense kernels are supported"
    n_out = p.kernel_shape[1]
    if p.basis == "identity":
        return None
    if p.redundant:
        return (f"redundant transform (mode {p.mode!r}: {p.n_coefficients} coefficients for "
                f"{p.n_weights} weights) has no square adjoint; use mode='periodization'")
    if (p.view not in INPUT_SIDE_VIEWS or p.x_shape[-1] != n_out or p.pre_shape[-1] != n_out
            or (len(p.x_shape) - 1) in p.transform_axes
            or (p.perm is not None and p.perm[-1] != len(p.pre_shape) - 1)):
        return (f"view {p.view!r} transforms the output axis, not the input side; the "
                "kernel stays masked dense")
    return None


def _adjoint_wavelet(name):
    """The wavelet whose analysis is the adjoint of `name`'s synthesis (itself if orthogonal)."""
    import pywt

    w = pywt.Wavelet(name)
    if w.orthogonal:
        return name
    dec_lo, dec_hi, rec_lo, rec_hi = w.filter_bank
    return pywt.Wavelet(f"{name}_adjoint", filter_bank=(rec_lo[::-1], rec_hi[::-1],
                                                          dec_lo[::-1], dec_hi[::-1]))


@functools.lru_cache(maxsize=64)
def _dct_matrix(n):
    import scipy.fft

    return scipy.fft.dct(np.eye(n), type=2, norm="ortho", axis=0).astype(np.float32)


def _along(t, axis, mat):
    """``mat @ t`` along `axis` of `t`."""
    import tensorflow as tf

    rank = t.shape.rank
    perm = [i for i in range(rank) if i != axis] + [axis]
    y = tf.linalg.matmul(tf.transpose(t, perm), tf.constant(mat.T, dtype=t.dtype))
    return tf.transpose(y, np.argsort(perm).tolist())


#: Largest block (coefficients per block) for which a 2-tap wavelet's multi-level transform is
#: computed in block form: one small matrix product per block of ``2**level`` samples per axis.
BLOCK_MAX_SIZE = 64
#: The block form is found by transforming the identity (``n_in x n_in``): up to this many inputs.
BLOCK_SEARCH_MAX_INPUTS = 4096


class InputTransform:
    """``z = S^T x`` for a batch of inputs of one `LayerPlan` (the adjoint of its synthesis).

    Generic form: ``dwt_keras.wavelets.wavedec``/``wavedec2`` with the adjoint wavelet (or the
    DCT matrices) over the plan's axes; ``z`` then has the layout of the plan's coefficient
    vector with the unit axis removed (the coefficient ``k`` of `KernelTransform.forward` is
    ``C[k // n_out, k % n_out]``, row ``k // n_out`` of ``z``).

    Block form (2-tap wavelets such as haar, when a block has at most `BLOCK_MAX_SIZE`
    coefficients): a ``level``-level transform of axes divisible by ``2**level`` acts on
    disjoint blocks of ``2**level`` samples per axis, all alike; it is computed as a reshape and
    one ``(block x block)`` matrix product, found and verified numerically against the generic
    form. Its ``z`` is in block order: row ``r`` of ``C`` is column ``z_index[r]`` of ``z``.

    Args:
        plan: a supported `bases.LayerPlan` (see `unsupported_reason`).
        block: allow the block form.
    """

    def __init__(self, plan, block=True):
        reason = unsupported_reason(plan)
        if reason is not None:
            raise ValueError(f"Layer '{plan.layer}': {reason}.")
        self.plan = plan
        self.n_in, self.units = (int(s) for s in plan.kernel_shape)
        self.n_coef_in = plan.n_coefficients // self.units if plan.basis != "identity" else self.n_in
        self._wavelet = _adjoint_wavelet(plan.wavelet) if plan.basis == "wavelet" else None
        #: z column of each row of ``C`` (None: the same index).
        self.z_index = None
        self.block_matrix = self._block_form() if block else None

    # -- layout ---------------------------------------------------------------
    def _layout(self, x, ops):
        """`x` ``(batch, n_in)`` in the plan's ``x_shape`` layout without the unit axis."""
        p = self.plan
        t = ops.reshape(x, (-1,) + tuple(p.pre_shape[:-1]))
        if p.perm is not None:
            t = ops.transpose(t, (0,) + tuple(int(a) + 1 for a in p.perm[:-1]))
        return ops.reshape(t, (-1,) + tuple(p.x_shape[:-1]))

    def _split_blocks(self, t, ops, side):
        """``(batch, n_blocks, block)``: each transformed axis split into ``(n / side, side)``."""
        axes = [int(a) for a in self.plan.transform_axes]
        shape = [int(s) for s in self.plan.x_shape[:-1]]
        split, outer, inner = [-1], [0], []
        for i, n in enumerate(shape):
            if i in axes:
                split += [n // side, side]
                outer.append(len(split) - 2)
                inner.append(len(split) - 1)
            else:
                split.append(n)
                outer.append(len(split) - 1)
        inner = [inner[axes.index(a)] for a in sorted(axes)]
        t = ops.transpose(ops.reshape(t, split), outer + inner)
        return ops.reshape(t, (-1, self.n_in // side ** len(axes), side ** len(axes)))

    def _generic(self, t):
        import tensorflow as tf

        from dwt_keras import wavelets

        p = self.plan
        axes = [int(a) + 1 for a in p.transform_axes]
        if p.basis == "dct":
            for a in axes:
                t = _along(t, a, _dct_matrix(int(t.shape[a])))
            return tf.reshape(t, (-1, self.n_coef_in))
        if len(axes) == 1:
            bands = wavelets.wavedec(t, self._wavelet, level=p.level, mode=p.mode, axis=axes[0])
        else:
            coeffs = wavelets.wavedec2(t, self._wavelet, level=p.level, mode=p.mode, axes=axes)
            bands = [coeffs[0]] + [d for level in coeffs[1:] for d in level]
        flat = [tf.reshape(b, (-1, int(np.prod(b.shape[1:])))) for b in bands]
        return tf.concat(flat, axis=1)

    def _block_form(self):
        """The shared block matrix (and `z_index`), or None where the block form does not apply."""
        from dwt_keras import wavelets

        p = self.plan
        if p.basis != "wavelet" or wavelets.get_wavelet(p.wavelet).dec_len != 2:
            return None
        side = 2 ** p.level
        size = side ** len(p.transform_axes)
        if (size > BLOCK_MAX_SIZE or self.n_in > BLOCK_SEARCH_MAX_INPUTS
                or any(int(p.x_shape[a]) % side for a in p.transform_axes)):
            return None
        eye = np.eye(self.n_in, dtype=np.float32)
        full = np.asarray(self._generic(self._layout(eye, _NumpyOps)))  # (n_in, n_coef_in)
        blocks = self._split_blocks(self._layout(np.arange(self.n_in)[None], _NumpyOps),
                                    _NumpyOps, side)[0]                # (n_blocks, size)
        z_index = np.full(self.n_coef_in, -1, np.int64)
        matrix, support = None, np.abs(full) > 1e-6
        for k, inputs in enumerate(blocks):
            cols = np.flatnonzero(support[inputs].any(axis=0))
            outside = np.delete(support, inputs, axis=0)[:, cols]
            if cols.size != size or outside.any():
                return None
            m = full[np.ix_(inputs, cols)]
            if matrix is None:
                matrix = m
            elif not np.allclose(m, matrix, atol=1e-6):
                return None
            z_index[cols] = k * size + np.arange(size)
        if (z_index < 0).any():
            return None
        self.z_index = z_index.astype(np.int32)
        return matrix.astype(np.float32)

    # -- public ---------------------------------------------------------------
    def __call__(self, x):
        """`x`: ``(batch, n_in)``; returns ``(batch, n_coef_in)`` (see the class for the order)."""
        import tensorflow as tf

        if self.plan.basis == "identity":
            return x
        t = self._layout(x, tf)
        if self.block_matrix is None:
            return self._generic(t)
        blocks = self._split_blocks(t, tf, 2 ** self.plan.level)
        z = tf.linalg.matmul(blocks, tf.constant(self.block_matrix, dtype=blocks.dtype))
        return tf.reshape(z, (-1, self.n_coef_in))

    def z_columns(self, rows):
        """The columns of ``z`` holding coefficient rows `rows` (a tensor or array)."""
        import tensorflow as tf

        if self.z_index is None:
            return rows
        if isinstance(rows, np.ndarray):
            return self.z_index[rows]
        return tf.gather(tf.constant(self.z_index), rows)

    def multiply_adds(self):
        """Multiply-adds per sample of the transform: the block form's matrix products, or
        (``dwt_keras.wavelets``' documented rule) a dense matrix product on axes up to
        ``max(DENSE_MAX_LEN, 4 * filter length)`` and the polyphase form (``filter length``
        multiply-adds per coefficient) beyond."""
        from dwt_keras import wavelets

        p = self.plan
        if p.basis == "identity":
            return 0
        if self.block_matrix is not None:
            return self.n_in * self.block_matrix.shape[1]
        shape = [int(s) for s in p.x_shape[:-1]]
        total = 0
        if p.basis == "dct":
            for a in p.transform_axes:
                total += int(np.prod(shape)) * shape[a]
            return total
        taps = wavelets.get_wavelet(p.wavelet).dec_len
        for _ in range(p.level):
            for a in p.transform_axes:
                n, rest = shape[a], int(np.prod(shape)) // shape[a]
                dense = n <= max(wavelets.DENSE_MAX_LEN, 4 * taps)
                total += rest * (n * n if dense else n * taps)
            for a in p.transform_axes:
                shape[a] = shape[a] // 2
        return total


class _NumpyOps:
    """The two array operations `InputTransform`'s layout needs, for NumPy arrays."""

    reshape = staticmethod(np.reshape)
    transpose = staticmethod(np.transpose)


# --------------------------------------------------------------------------- #
# The layer
# --------------------------------------------------------------------------- #
def choose_product(n_kept, n_rows, n_coef_in, units):
    """The product for a layer, from the measurements of ``benchmarks/bench_coefficient_domain.py
    --part products`` on this project's 2-core CPU (``coefficient_domain_products.json``):
    ``"rows"`` when the used rows are at most `ROWS_MAX_FRACTION` of the input coefficients
    (the matrix product shrinks by that fraction, which pays for gathering those inputs), else
    ``"dense"``. ``"gather"`` (one multiply per kept coefficient, but a gather and a segment sum
    of ``batch x kept`` elements) was slower than both at every measured keep ratio (1-10 %)
    and batch size (32, 128); it is available by name."""
    del n_kept, units
    return "rows" if n_rows <= ROWS_MAX_FRACTION * n_coef_in else "dense"


@keras.saving.register_keras_serializable(package="dwt_keras")
class WaveletDomainDense(keras.layers.Layer):
    """A ``Dense`` layer whose kernel is held as its kept transform coefficients.

    ``y = activation(C^T (S^T x) + bias)``, ``S^T`` the input transform of `plan` (see
    `InputTransform`), ``C`` the ``n_coef_in x units`` coefficient matrix of which only
    `n_kept` entries are stored.

    Args:
        units: output size.
        plan: the kernel's `bases.LayerPlan` (or its ``to_dict()``); must be supported (see
            `unsupported_reason`).
        n_kept: number of kept coefficients.
        n_rows: number of input coefficients (rows of ``C``) that hold a kept coefficient.
        activation, use_bias, bias_initializer, bias_regularizer, bias_constraint: as ``Dense``.
        values_regularizer: a regularizer of the kept coefficients (for an orthogonal transform
            an L2 penalty on them equals one on the kernel).
        product: ``"auto"`` (`choose_product`), ``"gather"``, ``"rows"`` or ``"dense"``.
        **kwargs: base layer arguments (``name``, ``dtype``, ...).

    Weights: ``values`` (``(n_kept,)``, trainable), ``positions`` (``(n_kept,)`` int32: the flat
    index ``r * units + u`` of each value in the used-rows block, sorted by unit), ``rows``
    (``(n_rows,)`` int32: the used input coefficients, increasing) and ``bias``.

    Use `WaveletDomainDense.from_dense` or `to_coefficient_domain` to build one from a
    compressed model.

    Example:

    >>> layer = WaveletDomainDense.from_dense(dense_layer, plan, mask)   # doctest: +SKIP
    """

    def __init__(self, units, plan, n_kept, n_rows, activation=None, use_bias=True,
                 bias_initializer="zeros", bias_regularizer=None, bias_constraint=None,
                 values_regularizer=None, product="auto", **kwargs):
        super().__init__(**kwargs)
        plan_obj = plan if isinstance(plan, bases.LayerPlan) else bases.LayerPlan.from_dict(plan)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive integer. Received: units={units}")
        if int(plan_obj.kernel_shape[1]) != units:
            raise ValueError(f"The plan's kernel {plan_obj.kernel_shape} has "
                             f"{plan_obj.kernel_shape[1]} units. Received: units={units}")
        self.transform = InputTransform(plan_obj)
        n_kept, n_rows = int(n_kept), int(n_rows)
        if not 0 <= n_rows <= self.transform.n_coef_in or not 0 <= n_kept <= n_rows * units:
            raise ValueError(f"Need 0 <= n_rows <= {self.transform.n_coef_in} and "
                             f"0 <= n_kept <= n_rows * units. Received: n_kept={n_kept}, "
                             f"n_rows={n_rows}")
        if product not in PRODUCTS:
            raise ValueError(f"product must be one of {PRODUCTS}. Received: product={product!r}")
        self.units, self.plan, self.n_kept, self.n_rows = units, plan_obj, n_kept, n_rows
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.values_regularizer = keras.regularizers.get(values_regularizer)
        self.product = product
        self.resolved_product = (choose_product(n_kept, n_rows, self.transform.n_coef_in, units)
                                 if product == "auto" else product)
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: self.transform.n_in})
        # Set by `litert.serving_graph` while a serving graph is traced: a callable computing
        # transform and product from constants (quantised values) instead of the variables.
        self._serving = None

    def build(self, input_shape):
        self.values = self.add_weight(name="values", shape=(self.n_kept,), initializer="zeros",
                                      regularizer=self.values_regularizer, trainable=True)
        self.positions = self.add_weight(name="positions", shape=(self.n_kept,), dtype="int32",
                                         initializer="zeros", trainable=False)
        self.rows = self.add_weight(name="rows", shape=(self.n_rows,), dtype="int32",
                                    initializer="zeros", trainable=False)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,),
                                        initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
        else:
            self.bias = None

    # -- the product ----------------------------------------------------------
    def _coefficient_matrix(self, values, full):
        """The kept values scattered into a dense block (transient): the used rows'
        ``(n_rows, units)`` block, or with `full` all ``(n_coef_in, units)`` in z's order."""
        import tensorflow as tf

        pos = tf.convert_to_tensor(self.positions)
        n_rows = self.transform.n_coef_in if full else self.n_rows
        if full:
            local, unit = pos // self.units, pos % self.units
            columns = self.transform.z_columns(tf.convert_to_tensor(self.rows))
            pos = tf.gather(columns, local) * self.units + unit
        # SparseToDense (its gradient a gather): measured ~5x faster than scatter_nd here
        flat = tf.sparse.to_dense(tf.SparseTensor(tf.cast(tf.expand_dims(pos, 1), tf.int64),
                                                  values, [n_rows * self.units]),
                                  validate_indices=False)
        return tf.reshape(flat, (n_rows, self.units))

    def _product(self, z, values):
        import tensorflow as tf

        mode = self.resolved_product
        columns = self.transform.z_columns(tf.convert_to_tensor(self.rows))
        if mode == "dense":
            return tf.linalg.matmul(z, self._coefficient_matrix(values, full=True))
        if mode == "rows":
            used = tf.gather(z, columns, axis=1)
            return tf.linalg.matmul(used, self._coefficient_matrix(values, full=False))
        pos = tf.convert_to_tensor(self.positions)
        row = tf.gather(columns, pos // self.units)
        taken = tf.gather(tf.transpose(z), row) * tf.expand_dims(values, 1)
        out = tf.math.unsorted_segment_sum(taken, pos % self.units, self.units)
        return tf.transpose(out)

    def call(self, inputs):
        import tensorflow as tf

        x = tf.convert_to_tensor(inputs)
        lead = tf.shape(x)[:-1]
        x2 = tf.reshape(x, (-1, self.transform.n_in))
        if self._serving is not None:
            y = self._serving(x2)
        else:
            z = self.transform(x2)
            y = self._product(z, tf.cast(self.values, z.dtype))
        if self.bias is not None:
            y = y + tf.cast(self.bias, y.dtype)
        if x.shape.rank != 2:
            y = tf.reshape(y, tf.concat([lead, [self.units]], axis=0))
        return self.activation(y) if self.activation is not None else y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "plan": self.plan.to_dict(),
            "n_kept": self.n_kept,
            "n_rows": self.n_rows,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            "values_regularizer": keras.regularizers.serialize(self.values_regularizer),
            "product": self.product,
        })
        return config

    # -- conversion -------------------------------------------------------------
    @classmethod
    def from_dense(cls, layer, plan, mask, coefficients=None, product="auto"):
        """A built `WaveletDomainDense` equal to the ``Dense`` `layer` masked by `mask`.

        Args:
            layer: a built ``keras.layers.Dense`` whose kernel `plan` describes.
            plan: its `bases.LayerPlan`.
            mask: boolean ``(n_coefficients,)`` mask of kept coefficients.
            coefficients: the flat coefficients (default: ``KernelTransform(plan).forward`` of
                the layer's kernel).
            product: see the class.
        """
        if coefficients is None:
            coefficients = np.asarray(bases.KernelTransform(plan).forward(layer.kernel.value))
        units = int(plan.kernel_shape[1])
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.size != plan.n_coefficients:
            raise ValueError(f"Layer '{plan.layer}': mask of {mask.size} entries, expected "
                             f"{plan.n_coefficients}.")
        values, positions, rows = pack_coefficients(mask, coefficients, units)
        new = cls(units, plan, n_kept=values.size, n_rows=rows.size,
                  activation=layer.activation, use_bias=layer.use_bias,
                  bias_initializer=layer.bias_initializer,
                  bias_regularizer=layer.bias_regularizer,
                  bias_constraint=layer.bias_constraint,
                  values_regularizer=layer.kernel_regularizer,
                  activity_regularizer=layer.activity_regularizer,
                  product=product, name=layer.name, dtype=layer.dtype_policy)
        new.build((None, int(plan.kernel_shape[0])))
        new.values.assign(values)
        new.positions.assign(positions)
        new.rows.assign(rows)
        if layer.use_bias:
            new.bias.assign(np.asarray(layer.bias.numpy()))
        return new

    def coefficient_mask_and_values(self):
        """``(mask, flat coefficients)`` in the plan's coefficient order (NumPy)."""
        return unpack_coefficients(np.asarray(self.values.numpy()),
                                   np.asarray(self.positions.numpy()),
                                   np.asarray(self.rows.numpy()), self.units,
                                   self.plan.n_coefficients)

    def dense_kernel(self):
        """The equivalent dense kernel ``S(C)`` (NumPy)."""
        _, coeff = self.coefficient_mask_and_values()
        return np.asarray(bases.KernelTransform(self.plan).inverse(coeff.astype(np.float32)))

    def multiply_adds(self):
        """Multiply-adds per sample: the input transform plus the product as executed."""
        product = {"gather": self.n_kept, "rows": self.n_rows * self.units,
                   "dense": self.transform.n_coef_in * self.units}[self.resolved_product]
        return self.transform.multiply_adds() + product


def pack_coefficients(mask, coefficients, units):
    """``(values float32, positions int32, rows int32)`` of the kept coefficients.

    The coefficient ``k`` is ``C[k // units, k % units]``; `rows` are the rows of ``C`` holding a
    kept coefficient, and each position is ``r * units + u`` in the ``(len(rows), units)`` block
    (``rows[r]`` the row), sorted by unit then row.
    """
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    coefficients = np.asarray(coefficients, dtype=np.float32).reshape(-1)
    kept = np.flatnonzero(mask)
    row, unit = kept // units, kept % units
    rows = np.unique(row)
    local = np.searchsorted(rows, row)
    order = np.lexsort((local, unit))
    positions = (local * units + unit)[order]
    return coefficients[kept][order], positions.astype(np.int32), rows.astype(np.int32)


def unpack_coefficients(values, positions, rows, units, n_coefficients):
    """Inverse of `pack_coefficients`: ``(mask, flat coefficients)``."""
    positions = np.asarray(positions, dtype=np.int64)
    flat = np.asarray(rows, dtype=np.int64)[positions // units] * units + positions % units
    if flat.size and (flat.max() >= n_coefficients or flat.min() < 0):
        raise ValueError("Coefficient positions out of range for the plan.")
    mask = np.zeros(n_coefficients, dtype=bool)
    coeff = np.zeros(n_coefficients, dtype=np.float32)
    mask[flat] = True
    coeff[flat] = values
    return mask, coeff


# --------------------------------------------------------------------------- #
# Whole models: dense <-> coefficient form
# --------------------------------------------------------------------------- #
def _check_cloneable(model):
    functional = any(c.__name__ == "Functional" for c in type(model).__mro__)
    if not isinstance(model, keras.Sequential) and not functional:
        raise ValueError(
            f"Model '{model.name}' is a subclassed model ({type(model).__name__}): the coefficient "
            "form rebuilds the model layer by layer, which needs a functional or Sequential "
            "model. Build it with keras.Model(inputs, outputs) or keras.Sequential.")


def _clone_with(model, replacements):
    """A copy of `model` with the layers named in `replacements` swapped, other weights copied."""
    def clone(layer):
        if layer.name in replacements:
            return replacements[layer.name]
        return layer.__class__.from_config(layer.get_config())

    new = keras.models.clone_model(model, clone_function=clone, recursive=True)
    old_layers = {l.name: l for l in bases._flatten_layers(model)}
    for layer in bases._flatten_layers(new):
        if layer.name in replacements or not layer.weights:
            continue
        layer.set_weights(old_layers[layer.name].get_weights())
    return new


def _max_relative_error(reference, value):
    reference, value = np.asarray(reference), np.asarray(value)
    return float(np.abs(reference - value).max() / max(float(np.abs(reference).max()), 1e-30))


#: Largest relative output error of the conversion's self-check (float32 round-off is ~1e-6).
SELF_CHECK_TOLERANCE = 1e-4


def _self_check(new, kernel, seed=0):
    """Max relative error of `new`'s product against ``x @ kernel`` on random inputs."""
    x = np.random.default_rng(seed).standard_normal((4, kernel.shape[0])).astype(np.float32)
    return _max_relative_error(x @ kernel, new._product(new.transform(x), new.values))


def to_coefficient_domain(model, state=None, product="auto", check=True):
    """The coefficient form of a compressed model: `WaveletDomainDense` for each supported kernel.

    Every other layer is copied with its weights. Kernels that the coefficient form does not
    support (see `unsupported_reason`) stay *masked dense*: their reconstructed kernels are
    copied, and a `CompressionState` with their plans and masks is attached to the new model and
    installed, so that a ``fit()`` holds their masks as before.

    Args:
        model: a functional or Sequential model with an attached `CompressionState` (from the
            compression callbacks, `compress_model` or `load_compressed`).
        state: that state, if not attached.
        product: see `WaveletDomainDense`.
        check: compare each converted layer with its masked dense kernel on random inputs and
            keep it masked dense (recorded) if they differ by more than `SELF_CHECK_TOLERANCE`.

    Returns:
        A new, uncompiled Keras model computing the same function as the masked dense model.
        `coefficient_domain_record(new_model)` lists per compressed layer its ``form``
        (``"coefficient"`` or ``"masked_dense"``), the product and the reason of a fallback.

    Example:

    >>> coeff_model = to_coefficient_domain(model)          # doctest: +SKIP
    >>> coefficient_domain_record(coeff_model)[0]["form"]   # doctest: +SKIP
    'coefficient'
    """
    state = state or constraints.get_state(model)
    if state is None:
        raise ValueError(
            f"Model '{model.name}' has no CompressionState: compress it first (compress_model, "
            "a compression callback, or load_compressed).")
    _check_cloneable(model)
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of {PRODUCTS}. Received: product={product!r}")
    masks, coeffs = state.mask_arrays(), state.coefficients()
    replacements, record, masked = {}, [], []
    for name, plan in state.plans.items():
        layer = state.layers[name]
        coeff = np.where(masks[name], coeffs[name], 0).astype(np.float32)
        reason = unsupported_reason(plan)
        if reason is None and bases.is_nested_key(name):
            reason = ("nested in a custom layer (the coefficient form replaces the model's own "
                      "layers)")
        if reason is None and type(layer) is not keras.layers.Dense:
            reason = f"{type(layer).__name__} is not a plain keras.layers.Dense"
        if reason is None and getattr(layer, "lora_enabled", False):
            reason = "LoRA-enabled Dense"
        if reason is None and getattr(layer, "quantization_mode", None):
            reason = f"quantized Dense ({layer.quantization_mode})"
        entry = {"layer": name, "view": plan.view, "basis": plan.basis_name,
                 "kept": int(masks[name].sum()), "n_coefficients": plan.n_coefficients}
        if reason is None:
            new = WaveletDomainDense.from_dense(layer, plan, masks[name], coeff, product=product)
            error = _self_check(new, np.asarray(bases.KernelTransform(plan).inverse(coeff))) \
                if check else 0.0
            if error > SELF_CHECK_TOLERANCE:
                reason = (f"self-check failed: relative error {error:.2e} of the coefficient "
                          "product against the masked kernel")
            else:
                replacements[name] = new
                record.append({**entry, "form": "coefficient", "product": new.resolved_product,
                               "rows": new.n_rows, "self_check_error": error})
                continue
        # the layer is copied as it is: its kernel, and its mask held as in the dense model
        masked.append((name, plan))
        record.append({**entry, "form": "masked_dense", "reason": reason})
    new_model = _clone_with(model, replacements)
    if masked:
        sub = constraints.CompressionState.create(
            new_model, [p for _, p in masked], scope=state.scope,
            keep_approximation=state.keep_approximation)
        sub.set_masks({n: masks[n] for n, _ in masked}, project=False)
        sub.install()
    object.__setattr__(new_model, _RECORD_ATTR, {
        "layers": record, "scope": state.scope, "keep_approximation": state.keep_approximation})
    return new_model


def coefficient_domain_record(model):
    """Per compressed layer of a model made by `to_coefficient_domain`: ``layer``, ``form``
    (``"coefficient"`` / ``"masked_dense"``), ``product``, ``reason`` (of a fallback)...; for a
    model loaded from ``.keras``, rebuilt from its `WaveletDomainDense` layers."""
    record = getattr(model, _RECORD_ATTR, None)
    if record is not None:
        return record["layers"]
    return [{"layer": l.name, "view": l.plan.view, "basis": l.plan.basis_name, "kept": l.n_kept,
             "n_coefficients": l.plan.n_coefficients, "form": "coefficient",
             "product": l.resolved_product, "rows": l.n_rows}
            for l in bases._flatten_layers(model) if isinstance(l, WaveletDomainDense)]


def to_dense(model):
    """The dense form of a coefficient-form model, with its `CompressionState` attached.

    Each `WaveletDomainDense` becomes a ``Dense`` whose kernel is the reconstruction of its
    coefficients; the state holds the plans and masks of those and of any masked-dense layer,
    so the result can be saved with `save_compressed`, retrained with the masks held or
    converted again.

    Args:
        model: a functional or Sequential model (e.g. from `to_coefficient_domain`).

    Returns:
        A new, uncompiled Keras model.
    """
    _check_cloneable(model)
    coefficient_layers = {l.name: l for l in bases._flatten_layers(model)
                          if isinstance(l, WaveletDomainDense)}
    old_state = constraints.get_state(model)
    if not coefficient_layers and old_state is None:
        raise ValueError(f"Model '{model.name}' has no WaveletDomainDense layer and no "
                         "CompressionState: nothing to convert.")
    replacements = {}
    for name, l in coefficient_layers.items():
        replacements[name] = keras.layers.Dense(
            l.units, activation=l.activation, use_bias=l.use_bias,
            bias_initializer=l.bias_initializer, kernel_regularizer=l.values_regularizer,
            bias_regularizer=l.bias_regularizer, bias_constraint=l.bias_constraint,
            activity_regularizer=l.activity_regularizer, name=name, dtype=l.dtype_policy)
        replacements[name].build((None, l.transform.n_in))
        replacements[name].kernel.assign(l.dense_kernel())
        if l.use_bias:
            replacements[name].bias.assign(np.asarray(l.bias.numpy()))
    new_model = _clone_with(model, replacements)
    plans, masks = {}, {}
    for name, l in coefficient_layers.items():
        plans[name] = l.plan
        masks[name] = l.coefficient_mask_and_values()[0]
    if old_state is not None:
        for name, plan in old_state.plans.items():
            plans[name] = plan
            masks[name] = old_state.mask_arrays()[name]
    record = getattr(model, _RECORD_ATTR, {})
    order = [l.name for l in bases._flatten_layers(new_model) if l.name in plans]
    state = constraints.CompressionState.create(
        new_model, [plans[n] for n in order],
        scope=record.get("scope", old_state.scope if old_state else "global"),
        keep_approximation=record.get("keep_approximation",
                                      old_state.keep_approximation if old_state else False))
    state.set_masks(masks, project=False)
    return new_model


# --------------------------------------------------------------------------- #
# Retraining in the coefficient domain
# --------------------------------------------------------------------------- #
def copy_coefficients_back(coefficient_model, model):
    """Writes a coefficient-form model's weights into the dense `model` it was made from.

    Each `WaveletDomainDense` kernel is reconstructed into the matching ``Dense`` kernel; every
    other weight is copied. The dense model's `CompressionState` masks stay as they are (the
    coefficient form only trains the kept coefficients), so the mask still holds exactly.
    """
    targets = {l.name: l for l in bases._flatten_layers(model)}
    for layer in bases._flatten_layers(coefficient_model):
        if not layer.weights:
            continue
        target = targets.get(layer.name)
        if target is None:
            raise ValueError(f"Layer '{layer.name}' of the coefficient form has no counterpart "
                             f"in model '{model.name}'.")
        if isinstance(layer, WaveletDomainDense):
            target.kernel.assign(layer.dense_kernel())
            if layer.use_bias:
                target.bias.assign(np.asarray(layer.bias.numpy()))
        else:
            target.set_weights(layer.get_weights())


def retrain_coefficient_domain(model, *fit_args, product="auto", **fit_kwargs):
    """``model.fit(...)`` run on the coefficient form: only the kept coefficients train.

    Converts the compressed `model` (`to_coefficient_domain`), compiles the copy like `model`
    (a fresh optimizer of the same configuration that continues `model`'s iteration count, so
    learning-rate schedules go on), fits it with the given arguments, and writes the result back
    into `model` (`copy_coefficients_back`): afterwards `model` is the retrained dense model
    with its masks held exactly, ready for `save_compressed`.

    The masks are fixed: run a schedule's ramp (`GradualCompression`, `IterativeCompression`)
    on the dense model with the masks held by projection, and retrain here after its final mask.
    Callbacks that change masks are therefore refused. Note that an adaptive optimizer (Adam)
    scales the steps per coefficient here and per weight in the dense model, so the two
    trajectories differ (for plain SGD and an orthogonal basis they are the same).

    Args:
        model: a compiled functional/Sequential model with an attached `CompressionState`.
        *fit_args, **fit_kwargs: ``fit()`` arguments (``x``, ``y``, ``epochs``, ``callbacks``...).
        product: see `WaveletDomainDense`.

    Returns:
        The ``History`` of the coefficient-domain ``fit()``; ``history.model`` is the
        coefficient form.

    Example:

    >>> model.fit(x, y, epochs=2, callbacks=[GradualCompression(0.03, end_step=500)])  # doctest: +SKIP
    >>> retrain_coefficient_domain(model, x, y, epochs=3)     # doctest: +SKIP
    >>> save_compressed(model, "model.dwtc")                  # doctest: +SKIP
    """
    from dwt_keras.compression import callbacks as compression_callbacks

    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        raise ValueError(f"Model '{model.name}' is not compiled: compile it (optimizer, loss, "
                         "metrics) before retrain_coefficient_domain.")
    schedules = [type(c).__name__ for c in fit_kwargs.get("callbacks") or ()
                 if isinstance(c, compression_callbacks.CompressionCallback)]
    if schedules:
        raise ValueError(
            f"Callbacks {schedules} change the masks, which the coefficient form cannot: run the "
            "schedule on the dense model and call retrain_coefficient_domain after its final mask.")
    coefficient_model = to_coefficient_domain(model, product=product)
    advice = ("Compile it yourself: coefficient_model = to_coefficient_domain(model); "
              "coefficient_model.compile(...); coefficient_model.fit(...); "
              "copy_coefficients_back(coefficient_model, model).")
    config = model.get_compile_config()
    if not config:
        raise ValueError(f"Model '{model.name}' has no serialisable compile config. {advice}")
    try:
        coefficient_model.compile_from_config(config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Cannot compile the coefficient form like model '{model.name}' from "
                         f"its compile config ({e}). {advice}") from e
    coefficient_model.optimizer.iterations.assign(model.optimizer.iterations)
    history = coefficient_model.fit(*fit_args, **fit_kwargs)
    copy_coefficients_back(coefficient_model, model)
    model.optimizer.iterations.assign(coefficient_model.optimizer.iterations)
    return history
