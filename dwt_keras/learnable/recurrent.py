"""GRU cells and layers whose recurrent matrices are structured (wavelet or Fastfood) layers.

A GRU has three recurrent (hidden-to-hidden) matrices: the update gate `U_z`, the reset gate
`U_r` and the candidate state `U_h`. Any subset of them (`compress`, names `"update"`, `"reset"`,
`"state"`) can be replaced by a `WaveletDense` or `FastfoodDense` of width `units`; the others
stay dense. The cell follows the original GRU (Cho et al. 2014), with the reset gate applied
before the state matrix and one bias per gate:

    z  = sigmoid(W_z x + U_z h + b_z)
    r  = sigmoid(W_r x + U_r h + b_r)
    h~ = tanh(W_h x + U_h (r * h) + b_h)
    h' = z * h + (1 - z) * h~

The input matrices `W_*` stay dense (the inputs of the paper's tasks are 1 to 10 wide).

Use the layers `WaveletGRU` / `FastfoodGRU` (Keras RNN layers): they add the wavelet loss of all
structured matrices once per call, outside the time loop. With a bare cell inside
`keras.layers.RNN`, add `cell.wavelet_loss()` to the loss yourself.

Compute form of the recurrent matrices (`recurrent_impl`). The structured matrices are constant
within a sequence, so `WaveletGRU` / `FastfoodGRU` can evaluate them in two equivalent ways:

* `"structured"`: every time step applies each structured layer to the hidden state (O(n L J)
  work per row, but ~10 small ops per matrix and step: op-overhead bound on CPU);
* `"materialized"`: once per sequence (per layer call), each structured operator is applied to
  the identity (a batch of `n` unit vectors, O(n^2 L) work) to obtain its `n x n` matrix; the
  update and reset matrices are concatenated into one `(n, 2n)` matrix, so every time step costs
  two plain matmuls, as in `keras.layers.GRU`. Gradients flow through the materialisation to the
  structured parameters, so training is the same; the stored parameters are still only
  `2n + N_c + 4L` per matrix (the `n x n` matrices are temporaries of the forward pass, never
  weights).
* `"auto"` (default): `"materialized"` up to `AUTO_MATERIALIZE_MAX_UNITS` hidden units, where it
  each step is two plain matmuls (timed by `benchmarks/bench_gru_step.py`), `"structured"` above,
  where dense matmuls grow as n^2 against the structured layers' n L J.

The two forms give the same outputs and gradients to float32 rounding. A bare cell used inside
`keras.layers.RNN` (no per-sequence hook) always applies the structured layers step by step.
"""

import keras
import numpy as np
from keras import ops

from dwt_keras.learnable.fastfood import FastfoodDense
from dwt_keras.learnable.wavelet_dense import WaveletDense

GATES = ("update", "reset", "state")
RECURRENT_IMPLS = ("auto", "structured", "materialized")
# Largest hidden size for which `recurrent_impl="auto"` materialises the structured matrices.
AUTO_MATERIALIZE_MAX_UNITS = 2048


def parse_compress(compress):
    """Normalises `compress` (a list of gate names, a comma-separated string, or `"all"`)."""
    if isinstance(compress, str):
        compress = [c.strip() for c in compress.split(",") if c.strip()]
    compress = list(compress or [])
    if compress == ["all"]:
        compress = list(GATES)
    bad = [c for c in compress if c not in GATES]
    if bad or len(set(compress)) != len(compress):
        raise ValueError(
            f"compress={compress!r}: each entry must be one of {GATES} (no repeats), "
            "or the string 'all'."
        )
    return [g for g in GATES if g in compress]


def _check_units(units):
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
        raise ValueError(f"units must be an integer >= 1, got {units!r}.")
    return int(units)


def _check_recurrent_impl(recurrent_impl):
    if recurrent_impl not in RECURRENT_IMPLS:
        raise ValueError(
            f"recurrent_impl={recurrent_impl!r} is not valid. Valid choices: {', '.join(RECURRENT_IMPLS)}."
        )
    return recurrent_impl


class _StructuredGRUCell(keras.layers.Layer):
    """Shared GRU cell logic; subclasses say how a structured recurrent matrix is built."""

    def __init__(
        self,
        units,
        compress=GATES,
        seed=0,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        recurrent_impl="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _check_units(units)
        self.compress = parse_compress(compress)
        self.recurrent_impl = _check_recurrent_impl(recurrent_impl)
        if seed is None:
            seed = int(np.random.default_rng().integers(0, 2**31 - 1))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        self.seed = int(seed)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.state_size = self.units
        self.output_size = self.units
        # Created now (not in build) so that construction-time argument errors surface at once.
        self.structured = {
            gate: self._make_structured(gate, self.seed + 1 + i)
            for i, gate in enumerate(GATES)
            if gate in self.compress
        }

    def _make_structured(self, gate, seed):
        raise NotImplementedError

    def build(self, input_shape):
        input_dim = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=(input_dim, 3 * self.units), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(3 * self.units,), initializer=self.bias_initializer)
        self.recurrent_kernels = {}
        for gate in GATES:
            if gate in self.structured:
                self.structured[gate].build((None, self.units))
            else:
                self.recurrent_kernels[gate] = self.add_weight(
                    name=f"recurrent_kernel_{gate}",
                    shape=(self.units, self.units),
                    initializer=self.recurrent_initializer,
                )

    def resolved_recurrent_impl(self):
        """`"structured"` or `"materialized"`: the compute form `recurrent_impl` stands for."""
        if self.recurrent_impl != "auto":
            return self.recurrent_impl
        return "materialized" if self.units <= AUTO_MATERIALIZE_MAX_UNITS else "structured"

    def _recurrent_matrix(self, gate, dtype):
        """The `(units, units)` matrix `U` of a gate (`h -> h @ U`), dense or materialised."""
        if gate in self.structured:
            layer = self.structured[gate]
            # Row i is the structured map applied to e_i: the matrix of the (bias-free) linear map.
            return layer.apply(ops.eye(self.units, dtype=dtype), layer.prepare(dtype))
        return ops.cast(self.recurrent_kernels[gate], dtype)

    def prepare(self):
        """Weight-derived tensors of the recurrent matrices, computed once per sequence.

        `"structured"`: each structured layer's `prepare()` (filter matrices, cast scales).
        `"materialized"`: `{"update_reset": (n, 2n), "state": (n, n)}` matrices.
        """
        dtype = self.compute_dtype
        if self.resolved_recurrent_impl() == "structured":
            return {"structured": {gate: layer.prepare(dtype) for gate, layer in self.structured.items()}}
        update_reset = ops.concatenate(
            [self._recurrent_matrix("update", dtype), self._recurrent_matrix("reset", dtype)], axis=-1
        )
        return {"update_reset": update_reset, "state": self._recurrent_matrix("state", dtype)}

    def _recurrent(self, gate, h, prepared):
        if gate in self.structured:
            if prepared is not None:
                # Inside a sequence: reuse the filter matrices computed outside the time loop.
                return self.structured[gate].apply(h, prepared["structured"][gate])
            return self.structured[gate](h)
        return ops.matmul(h, ops.cast(self.recurrent_kernels[gate], h.dtype))

    def call(self, inputs, states, training=False):
        h = states[0] if isinstance(states, (list, tuple)) else states
        x = ops.matmul(inputs, ops.cast(self.kernel, inputs.dtype)) + ops.cast(self.bias, inputs.dtype)
        x_z, x_r, x_h = ops.split(x, 3, axis=-1)
        prepared = self.__dict__.get("_prepared")
        if prepared is not None and "update_reset" in prepared:
            u_z, u_r = ops.split(ops.matmul(h, prepared["update_reset"]), 2, axis=-1)
            z = ops.sigmoid(x_z + u_z)
            r = ops.sigmoid(x_r + u_r)
            candidate = ops.tanh(x_h + ops.matmul(r * h, prepared["state"]))
        else:
            z = ops.sigmoid(x_z + self._recurrent("update", h, prepared))
            r = ops.sigmoid(x_r + self._recurrent("reset", h, prepared))
            candidate = ops.tanh(x_h + self._recurrent("state", r * h, prepared))
        h_new = z * h + (1.0 - z) * candidate
        return h_new, [h_new]

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

    def wavelet_loss(self):
        """Sum of the wavelet losses of the structured matrices (0 for Fastfood / dense)."""
        total = ops.zeros((), dtype="float32")
        for layer in self.structured.values():
            if isinstance(layer, WaveletDense):
                total = total + layer.wavelet_loss()
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "compress": list(self.compress),
                "seed": self.seed,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "recurrent_impl": self.recurrent_impl,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="dwt_keras")
class WaveletGRUCell(_StructuredGRUCell):
    """GRU cell whose chosen recurrent matrices are `WaveletDense(units)` layers.

    Args:
        units: hidden size.
        compress: which recurrent matrices become wavelet layers: a subset of
            `("update", "reset", "state")`, a comma-separated string, or `"all"` (default: all).
        levels, filter_length, init_wavelet: as in `WaveletDense` (per structured matrix).
        wavelet_loss_weight: weight of the summed wavelet loss; applied by `WaveletGRU`.
        seed: seed of the structured matrices (matrix `i` uses `seed + 1 + i`).
        kernel_initializer, recurrent_initializer, bias_initializer: for the dense parts.
        recurrent_impl: `"auto"`, `"structured"` or `"materialized"`: how `WaveletGRU` evaluates
            the recurrent matrices (see the module docstring; same results, different speed).
        **kwargs: base layer arguments.

    Call arguments:
        inputs: `(batch, input_dim)` at one time step.
        states: `[h]` with `h` of shape `(batch, units)`.

    Example:

    ```python
    cell = WaveletGRUCell(128, compress="state,reset,update", filter_length=6, levels=4)
    rnn = keras.layers.RNN(cell)  # or WaveletGRU(128, ...), which also adds the wavelet loss
    ```
    """

    def __init__(
        self,
        units,
        compress=GATES,
        levels=None,
        filter_length=6,
        init_wavelet="haar",
        wavelet_loss_weight=1.0,
        seed=0,
        **kwargs,
    ):
        self.levels = levels
        self.filter_length = filter_length
        self.init_wavelet = init_wavelet
        self.wavelet_loss_weight = wavelet_loss_weight
        super().__init__(units, compress=compress, seed=seed, **kwargs)
        # WaveletDense validated the arguments; keep its normalised values.
        probe = next(iter(self.structured.values()), None)
        if probe is None:
            probe = WaveletDense(
                self.units, levels=levels, filter_length=filter_length, init_wavelet=init_wavelet,
                wavelet_loss_weight=wavelet_loss_weight, seed=0, _standalone=False,
            )
        self.init_wavelet = probe.init_wavelet
        self.wavelet_loss_weight = probe.wavelet_loss_weight

    def _make_structured(self, gate, seed):
        return WaveletDense(
            self.units,
            levels=self.levels,
            filter_length=self.filter_length,
            init_wavelet=self.init_wavelet,
            wavelet_loss_weight=self.wavelet_loss_weight,
            seed=seed,
            _standalone=False,
            name=f"wavelet_{gate}",
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "levels": self.levels,
                "filter_length": self.filter_length,
                "init_wavelet": self.init_wavelet,
                "wavelet_loss_weight": self.wavelet_loss_weight,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="dwt_keras")
class FastfoodGRUCell(_StructuredGRUCell):
    """GRU cell whose chosen recurrent matrices are `FastfoodDense(units)` layers.

    Args:
        units: hidden size (padded internally to a power of two by `FastfoodDense`).
        compress: which recurrent matrices become Fastfood layers (see `WaveletGRUCell`).
        seed: seed of the structured matrices (matrix `i` uses `seed + 1 + i`).
        kernel_initializer, recurrent_initializer, bias_initializer: for the dense parts.
        recurrent_impl: `"auto"`, `"structured"` or `"materialized"` (see `WaveletGRUCell`).
        **kwargs: base layer arguments.

    Call arguments:
        inputs: `(batch, input_dim)` at one time step.
        states: `[h]` with `h` of shape `(batch, units)`.

    Example:

    ```python
    rnn = keras.layers.RNN(FastfoodGRUCell(128, compress="all"))
    ```
    """

    def _make_structured(self, gate, seed):
        return FastfoodDense(self.units, seed=seed, name=f"fastfood_{gate}")


class _StructuredGRU(keras.layers.RNN):
    """RNN layer around a structured GRU cell that adds the cell's wavelet loss once per call."""

    _cell_class = None
    _cell_args = ()

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        **kwargs,
    ):
        cell_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in self._cell_args}
        cell = self._cell_class(units, name="cell", **cell_kwargs)
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )
        self.wavelet_loss_tracker = None
        has_wavelets = any(isinstance(layer, WaveletDense) for layer in cell.structured.values())
        if getattr(cell, "wavelet_loss_weight", 0) and has_wavelets:
            self.wavelet_loss_tracker = keras.metrics.Mean(name=f"{self.name}_wavelet_loss")

    def call(self, sequences, initial_state=None, mask=None, training=False):
        # The recurrent matrices depend on the weights only: compute their filter matrices (or the
        # materialised matrices) once here; the time loop captures them (plain attribute, kept
        # out of Keras' tracking).
        self.cell.__dict__["_prepared"] = self.cell.prepare()
        try:
            outputs = super().call(sequences, initial_state=initial_state, mask=mask, training=training)
        finally:
            self.cell.__dict__["_prepared"] = None
        if self.wavelet_loss_tracker is not None:
            loss = self.cell.wavelet_loss()
            self.add_loss(self.cell.wavelet_loss_weight * loss)
            self.wavelet_loss_tracker.update_state(loss)
        return outputs

    def wavelet_loss(self):
        return self.cell.wavelet_loss()

    def get_config(self):
        config = super().get_config()
        del config["cell"]
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        config.update({k: v for k, v in cell_config.items() if k in self._cell_args or k == "units"})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


_COMMON_CELL_ARGS = (
    "compress", "seed", "kernel_initializer", "recurrent_initializer", "bias_initializer", "recurrent_impl",
)


@keras.saving.register_keras_serializable(package="dwt_keras")
class WaveletGRU(_StructuredGRU):
    """GRU layer with wavelet-structured recurrent matrices (`WaveletGRUCell`).

    Adds `wavelet_loss_weight * (sum of the structured matrices' L_pr + L_ac)` with `add_loss` on
    every call (outside the time loop) and tracks it as the metric `<name>_wavelet_loss`.

    Args:
        units: hidden size.
        return_sequences, return_state, go_backwards, stateful, unroll: as in `keras.layers.RNN`.
        **kwargs: the `WaveletGRUCell` arguments (`compress`, `levels`, `filter_length`,
            `init_wavelet`, `wavelet_loss_weight`, `seed`, initializers, `recurrent_impl`) and base
            layer arguments.

    Call arguments:
        sequences: `(batch, time, features)`.
        initial_state, mask, training: as in `keras.layers.RNN`.

    Example:

    ```python
    model = keras.Sequential([keras.Input((150, 2)), WaveletGRU(512, compress="all"), keras.layers.Dense(1)])
    ```
    """

    _cell_class = WaveletGRUCell
    _cell_args = _COMMON_CELL_ARGS + ("levels", "filter_length", "init_wavelet", "wavelet_loss_weight")


@keras.saving.register_keras_serializable(package="dwt_keras")
class FastfoodGRU(_StructuredGRU):
    """GRU layer with Fastfood-structured recurrent matrices (`FastfoodGRUCell`).

    Args:
        units: hidden size.
        return_sequences, return_state, go_backwards, stateful, unroll: as in `keras.layers.RNN`.
        **kwargs: the `FastfoodGRUCell` arguments (`compress`, `seed`, initializers,
            `recurrent_impl`) and base layer arguments.

    Call arguments:
        sequences: `(batch, time, features)`.
        initial_state, mask, training: as in `keras.layers.RNN`.

    Example:

    ```python
    model = keras.Sequential([keras.Input((150, 2)), FastfoodGRU(512), keras.layers.Dense(1)])
    ```
    """

    _cell_class = FastfoodGRUCell
    _cell_args = _COMMON_CELL_ARGS
