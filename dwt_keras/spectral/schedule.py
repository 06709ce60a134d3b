"""`TauScheduler`: the frequency curriculum of spectral truncation."""

import copy

import keras
import numpy as np

from dwt_keras.spectral.truncation import SpectralTruncation, validate_tau

__all__ = ["TauScheduler", "tau_at", "find_truncation_layers", "validate_epochs"]


def validate_epochs(value, name="truncation_epochs"):
    """Returns `value` as an int after checking it is a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a non-negative integer; got {value!r}.")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value}.")
    return int(value)


def tau_at(progress_index, total, tau_init, tau_final):
    """Linear schedule value at step/epoch `progress_index` of `total`.

    Index 0 gives `tau_init` and index `total - 1` gives `tau_final`, so the
    last truncated epoch (or step) trains at `tau_final` (the identity for the
    cosine mask at `tau_final = 1`). Returns `None` once `progress_index >=
    total` (truncation off).

    Args:
        progress_index: 0-based epoch or global step.
        total: number of truncated epochs or steps.
        tau_init: first value.
        tau_final: last value.
    """
    if progress_index >= total:
        return None
    if total <= 1:
        return float(tau_init)
    frac = progress_index / (total - 1)
    return float(tau_init + (tau_final - tau_init) * frac)


def find_truncation_layers(model):
    """All `SpectralTruncation` layers inside `model` (nested models included)."""
    found, seen = [], set()

    def visit(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, SpectralTruncation):
            found.append(layer)
        for sub in getattr(layer, "_layers", None) or getattr(layer, "layers", None) or []:
            visit(sub)

    visit(model)
    return found


class TauScheduler(keras.callbacks.Callback):
    """Linear `tau_init -> tau_final` curriculum, then truncation off.

    For the first `truncation_epochs` epochs the `SpectralTruncation` layers of
    the model are active with `tau` growing linearly from `tau_init` (first
    epoch or step) to `tau_final` (last truncated epoch or step); from then on
    they are switched off (the identity, whatever the profile). The value is
    a pure function of the epoch Keras passes to `on_epoch_begin` (per epoch)
    or of `optimizer.iterations` (per step), so `fit(initial_epoch=k)` and
    restored optimizers resume on schedule. `tau` and the phase (1 =
    truncation, 0 = off) are added to the epoch `logs` (hence `History`) as
    `spectral_tau` / `spectral_phase`, and written to TensorBoard under
    `log_dir` when given.

    Args:
        tau_init: first cut-off, in (0, 1].
        tau_final: last cut-off, in [tau_init, 1].
        truncation_epochs: number of epochs with truncation (>= 0; 0 disables
            it from the start).
        per_step: update `tau` every batch from the global step instead of
            once per epoch.
        steps_per_epoch: steps per epoch for `per_step=True`; by default read
            from `fit`'s `params["steps"]`.
        layers: a `SpectralTruncation` layer or a list of them; default: every
            such layer found in the model.
        log_dir: folder for TensorBoard scalars `spectral/tau` and
            `spectral/phase` (written at the epoch index); `None` disables.
        verbose: print the value at each epoch start.

    Example:

    >>> model = keras.Sequential([keras.Input((32, 32, 3)),
    ...                           SpectralTruncation(profile="cosine"),
    ...                           keras.layers.Flatten(), keras.layers.Dense(10)])
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> sched = TauScheduler(tau_init=0.05, tau_final=1.0, truncation_epochs=10)
    >>> # model.fit(x, y, epochs=30, callbacks=[sched])
    """

    def __init__(
        self,
        tau_init=0.05,
        tau_final=1.0,
        truncation_epochs=10,
        per_step=False,
        steps_per_epoch=None,
        layers=None,
        log_dir=None,
        verbose=0,
    ):
        super().__init__()
        self.tau_init = validate_tau(tau_init, "tau_init")
        self.tau_final = validate_tau(tau_final, "tau_final")
        if self.tau_final < self.tau_init:
            raise ValueError(
                f"tau_final ({self.tau_final}) must be >= tau_init ({self.tau_init}): "
                "the curriculum widens the pass-band."
            )
        self.truncation_epochs = validate_epochs(truncation_epochs)
        self.per_step = bool(per_step)
        if steps_per_epoch is not None:
            steps_per_epoch = validate_epochs(steps_per_epoch, "steps_per_epoch")
            if steps_per_epoch == 0:
                raise ValueError("steps_per_epoch must be a positive integer; got 0.")
        self.steps_per_epoch = steps_per_epoch
        if layers is not None and not isinstance(layers, (list, tuple)):
            layers = [layers]
        for layer in layers or []:
            if not isinstance(layer, SpectralTruncation):
                raise ValueError(
                    f"layers must be SpectralTruncation instances; got {type(layer).__name__}."
                )
        self._explicit_layers = list(layers) if layers is not None else None
        self.log_dir = None if log_dir is None else str(log_dir)
        self.verbose = int(verbose)
        self._layers = None
        self._writer = None
        self._steps = None
        self._last = (None, None)

    # Keras-Tuner deep-copies callbacks for every trial; the model, the
    # layers found in it and the summary writer belong to one run only.
    def __deepcopy__(self, memo):
        clone = copy.copy(self)
        memo[id(self)] = clone
        clone._model = None
        clone._layers = None
        clone._writer = None
        clone._steps = None
        clone._last = (None, None)
        clone._explicit_layers = (
            list(self._explicit_layers) if self._explicit_layers is not None else None
        )
        return clone

    # -- schedule --------------------------------------------------------------
    def tau_for_epoch(self, epoch):
        """`tau` for a 0-based epoch, or `None` when truncation is off."""
        epoch = validate_epochs(epoch, "epoch")
        return tau_at(epoch, self.truncation_epochs, self.tau_init, self.tau_final)

    def tau_for_step(self, step, steps_per_epoch):
        """`tau` for a 0-based global step, or `None` when truncation is off."""
        step = validate_epochs(step, "step")
        total = self.truncation_epochs * int(steps_per_epoch)
        return tau_at(step, total, self.tau_init, self.tau_final)

    @property
    def current_tau(self):
        return self._last[0]

    @property
    def current_phase(self):
        return self._last[1]

    # -- callback hooks --------------------------------------------------------
    def on_train_begin(self, logs=None):
        layers = self._explicit_layers
        if layers is None:
            layers = find_truncation_layers(self.model)
        if not layers:
            raise ValueError(
                "TauScheduler found no SpectralTruncation layer in the model; add one "
                "(or wrap the model with SpectralTrainingModel) or pass layers=[...]."
            )
        self._layers = layers
        if self.per_step:
            steps = self.steps_per_epoch or (self.params or {}).get("steps")
            if not steps:
                raise ValueError(
                    "TauScheduler(per_step=True) needs steps_per_epoch: pass it, or fit "
                    "on data of known length so that params['steps'] is set."
                )
            self._steps = int(steps)
        if self.log_dir is not None and self._writer is None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.log_dir)

    def _apply(self, tau):
        phase = 0 if tau is None else 1
        for layer in self._layers:
            if tau is not None:
                layer.tau = tau
            layer.active = bool(phase)
        self._last = (tau, phase)

    def on_epoch_begin(self, epoch, logs=None):
        if self.per_step:
            step = int(self.model.optimizer.iterations.numpy())
            tau = self.tau_for_step(step, self._steps)
        else:
            tau = self.tau_for_epoch(epoch)
        self._apply(tau)
        if self.verbose:
            state = "off" if tau is None else f"tau={tau:.4f}"
            print(f"\nEpoch {epoch + 1}: spectral truncation {state}")

    def on_train_batch_begin(self, batch, logs=None):
        if not self.per_step:
            return
        step = int(self.model.optimizer.iterations.numpy())
        tau = self.tau_for_step(step, self._steps)
        if tau != self._last[0]:
            self._apply(tau)

    def on_epoch_end(self, epoch, logs=None):
        tau, phase = self._last
        # Off-phase epochs log tau = 1 so the History column stays numeric.
        tau_logged = 1.0 if tau is None else float(tau)
        if logs is not None:
            logs["spectral_tau"] = tau_logged
            logs["spectral_phase"] = float(phase if phase is not None else 0)
        if self._writer is not None:
            import tensorflow as tf

            with self._writer.as_default():
                tf.summary.scalar("spectral/tau", tau_logged, step=epoch)
                tf.summary.scalar("spectral/phase", float(phase or 0), step=epoch)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def get_config(self):
        return {
            "tau_init": self.tau_init,
            "tau_final": self.tau_final,
            "truncation_epochs": self.truncation_epochs,
            "per_step": self.per_step,
            "steps_per_epoch": self.steps_per_epoch,
            "log_dir": self.log_dir,
            "verbose": self.verbose,
        }
