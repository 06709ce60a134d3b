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
"""

import keras
import numpy as np
from keras import ops

from dwt_keras.learnable.fastfood import FastfoodDense
from dwt_keras.learnable.wavelet_dense import WaveletDense

GATES = ("update", "reset", "state")


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
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _check_units(units)
        self.compress = parse_compress(compress)
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

    def prepare(self):
        """Weight-derived tensors of the structured matrices, computed once per sequence."""
        return {gate: layer.prepare() for gate, layer in self.structured.items()}

    def _recurrent(self, gate, h):
        if gate in self.structured:
            prepared = self.__dict__.get("_prepared")
            if prepared is not None:
                # Inside a sequence: reuse the filter matrices computed outside the time loop.
                return self.structured[gate].apply(h, prepared[gate])
            return self.structured[gate](h)
        return ops.matmul(h, ops.cast(self.recurrent_kernels[gate], h.dtype))

    def call(self, inputs, states, training=False):
        h = states[0] if isinstance(states, (list, tuple)) else states
        x = ops.matmul(inputs, ops.cast(self.kernel, inputs.dtype)) + ops.cast(self.bias, inputs.dtype)
        x_z, x_r, x_h = ops.split(x, 3, axis=-1)
        z = ops.sigmoid(x_z + self._recurrent("update", h))
        r = ops.sigmoid(x_r + self._recurrent("reset", h))
        candidate = ops.tanh(x_h + self._recurrent("state", r * h))
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
        # The structured matrices' filter matrices depend on the weights only: compute them once
        # here; the time loop captures them (plain attribute, kept out of Keras' tracking).
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


_COMMON_CELL_ARGS = ("compress", "seed", "kernel_initializer", "recurrent_initializer", "bias_initializer")


@keras.saving.register_keras_serializable(package="dwt_keras")
class WaveletGRU(_StructuredGRU):
    """GRU layer with wavelet-structured recurrent matrices (`WaveletGRUCell`).

    Adds `wavelet_loss_weight * (sum of the structured matrices' L_pr + L_ac)` with `add_loss` on
    every call (outside the time loop) and tracks it as the metric `<name>_wavelet_loss`.

    Args:
        units: hidden size.
        return_sequences, return_state, go_backwards, stateful, unroll: as in `keras.layers.RNN`.
        **kwargs: the `WaveletGRUCell` arguments (`compress`, `levels`, `filter_length`,
            `init_wavelet`, `wavelet_loss_weight`, `seed`, initializers) and base layer arguments.

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
        **kwargs: the `FastfoodGRUCell` arguments (`compress`, `seed`, initializers) and base
            layer arguments.

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
