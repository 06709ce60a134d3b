"""Compression schedules as Keras callbacks: one-shot, iterative and gradual (polynomial decay).

All three share one `CompressionState` attached to the model (created on first use from the
callback's basis settings), install the coefficient-mask constraints so that every optimizer
step holds the masks inside the compiled train step, and decide *when* to prune from the
optimizer's iteration count or the epoch index that Keras passes in — never from a counter of
their own. They are therefore safe to ``copy.deepcopy`` (KerasTuner does), to resume with
``initial_epoch``, and to use under ``tf.distribute.MirroredStrategy`` (masks are variables
created in the model's strategy scope and assigned from the cross-replica context).

Example:

>>> import keras
>>> from dwt_keras.compression import GradualCompression
>>> cb = GradualCompression(final_keep=0.1, begin_step=0, end_step=2000, frequency=100,
...                         basis="haar")
>>> # model.fit(x, y, epochs=5, callbacks=[cb])
"""

import copy
import warnings

import keras

from dwt_keras.compression import bases, constraints, selection, storage


class CompressionCallback(keras.callbacks.Callback):
    """Base class: plans the model, owns no state beyond its configuration.

    Args:
        basis: ``"identity"``, ``"dct"``, a discrete wavelet name (``"haar"``, ``"db4"``...), or
            ``"auto"`` / `bases.AutoBasis` (chosen per layer on the weights at the first pruning,
            at the schedule's final keep ratio).
        mode: wavelet signal-extension mode (``"periodization"`` holds masks exactly).
        level: decomposition level, ``None`` for the largest exact level per layer.
        scope: ``"global"`` or ``"per_layer"`` coefficient ranking.
        keep_approximation: always keep the coarsest approximation band.
        min_kernel_size: kernels with fewer weights stay dense.
        layers: explicit names of layers to compress (default: all Dense/Conv above the size).
        exclude: names never compressed.
        layer_overrides: per-layer plan settings (see `bases.plan_model`).
        small_kernel_fallback: ``"dct"``, ``"identity"`` or ``"flatten"`` for kernels too small
            for a level (see `bases`).
        verbose: 1 prints the per-layer plan and each pruning step.

    An existing `CompressionState` on the model (from an earlier callback, `compress_model` or
    `load_compressed`) is reused as is; the basis arguments only apply when none exists.
    """

    def __init__(self, basis="haar", mode="periodization", level=None, scope="global",
                 keep_approximation=False, min_kernel_size=256, layers=None, exclude=(),
                 layer_overrides=None, small_kernel_fallback=bases.DEFAULT_FALLBACK, verbose=1):
        super().__init__()
        bases.basis_kind(basis)
        bases.check_exact_mode(basis, mode)
        if scope not in selection.SCOPES:
            raise ValueError(f"Unknown scope {scope!r}; valid: {selection.SCOPES}.")
        if small_kernel_fallback not in bases.FALLBACKS:
            raise ValueError(f"Unknown small_kernel_fallback {small_kernel_fallback!r}; "
                             f"valid: {bases.FALLBACKS}.")
        self._base_config = dict(
            basis=basis, mode=mode, level=level, scope=scope,
            keep_approximation=keep_approximation, min_kernel_size=min_kernel_size,
            layers=None if layers is None else list(layers), exclude=list(exclude),
            layer_overrides=copy.deepcopy(layer_overrides), small_kernel_fallback=small_kernel_fallback,
            verbose=verbose,
        )
        self.verbose = verbose

    # -- configuration and copying --------------------------------------------
    def _schedule_config(self):
        return {}

    def get_config(self):
        return {**self._base_config, **self._schedule_config()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __deepcopy__(self, memo):
        # A copy is a fresh callback with the same configuration: the schedule lives in the
        # optimizer's step / the epoch index, the masks in the model's state.
        return type(self).from_config(copy.deepcopy(self.get_config(), memo))

    # -- helpers ---------------------------------------------------------------
    def state(self):
        """The model's `CompressionState`, created from this callback's settings if missing."""
        state = constraints.get_state(self.model)
        if state is None:
            c = self._base_config
            plans = bases.plan_model(
                self.model, c["basis"], mode=c["mode"], level=c["level"],
                min_kernel_size=c["min_kernel_size"], layers=c["layers"], exclude=c["exclude"],
                layer_overrides=c["layer_overrides"],
                small_kernel_fallback=c["small_kernel_fallback"],
                scope=c["scope"], auto_keep_ratio=self._final_keep(),
            )
            if not plans:
                raise ValueError(
                    f"No layer of model '{self.model.name}' has a kernel of at least "
                    f"{c['min_kernel_size']} weights to compress; lower min_kernel_size or name "
                    "the layers."
                )
            if self.verbose:
                print("DWT compression plan:\n" + bases.format_plan(plans), flush=True)
            state = constraints.CompressionState.create(
                self.model, plans, scope=c["scope"], keep_approximation=c["keep_approximation"])
        return state

    def _final_keep(self):
        """The keep ratio the schedule ends at (the budget of ``basis="auto"``)."""
        return None

    def _install(self, state):
        if not state.installed:
            state.install()
        if self.model.train_function is None and getattr(self.model, "optimizer", None) is not None \
                and getattr(self.model, "compiled", False):
            # Inside fit(): the loop calls self.model.train_function, so re-create it now.
            self.model.make_train_function(force=True)

    def _step(self):
        opt = getattr(self.model, "optimizer", None)
        return int(opt.iterations.numpy()) if opt is not None else 0

    def _prune(self, state, keep_ratio=None, threshold=None, why=""):
        kept = state.prune(keep_ratio=keep_ratio, threshold=threshold)
        if self.verbose:
            total = sum(p.n_coefficients for p in state.plans.values())
            what = f"keep {keep_ratio:.4g}" if keep_ratio is not None else f"|c| >= {threshold:g}"
            print(f"[dwt-compression] {why}: {what} -> {sum(kept.values())}/{total} "
                  "coefficients kept", flush=True)
        return kept


class OneShotCompression(CompressionCallback):
    """Prunes once: after training (default) or when the optimizer reaches `at_step`.

    With ``at_step=None`` the masks are chosen at the end of ``fit()`` and installed, so a later
    ``fit()`` retrains with them held. With ``at_step=0`` the model is pruned before the first
    step of this ``fit()`` and retrained with the masks held.

    Args:
        keep_ratio: share of coefficients kept, in (0, 1] (float or ``{layer: float}``).
        threshold: instead of a ratio, keep coefficients with ``|c| >= threshold``.
        at_step: optimizer step at which to prune, or ``None`` for the end of training.
        **kwargs: basis settings, see `CompressionCallback`.
    """

    def __init__(self, keep_ratio=None, threshold=None, at_step=None, **kwargs):
        super().__init__(**kwargs)
        if (keep_ratio is None) == (threshold is None):
            raise ValueError("OneShotCompression needs exactly one of keep_ratio or threshold.")
        if keep_ratio is not None:
            selection.validate_keep_ratio(keep_ratio)
        if threshold is not None:
            selection.validate_threshold(threshold)
        if at_step is not None and (not isinstance(at_step, int) or at_step < 0):
            raise ValueError(f"at_step must be a non-negative int or None, got {at_step!r}.")
        self.keep_ratio, self.threshold, self.at_step = keep_ratio, threshold, at_step

    def _schedule_config(self):
        return {"keep_ratio": self.keep_ratio, "threshold": self.threshold, "at_step": self.at_step}

    def _final_keep(self):
        return self.keep_ratio

    def _done(self, state):
        return state.keep_ratio == self.keep_ratio and state.threshold == self.threshold

    def _maybe(self, step):
        state = self.state()
        if step >= self.at_step and not self._done(state):
            self._prune(state, self.keep_ratio, self.threshold, why=f"one-shot at step {step}")

    def on_train_begin(self, logs=None):
        state = self.state()
        if self.at_step is not None:
            self._install(state)
            self._epoch_start = self._step()
            self._maybe(self._epoch_start)
        elif state.installed:
            self._install(state)

    def on_epoch_begin(self, epoch, logs=None):
        if self.at_step is not None:
            self._epoch_start = self._step()
            self._maybe(self._epoch_start)

    def on_train_batch_end(self, batch, logs=None):
        if self.at_step is not None and not self._done(self.state()):
            self._maybe(self._epoch_start + batch + 1)

    def on_train_end(self, logs=None):
        if self.at_step is None:
            state = self.state()
            if not self._done(state):
                self._prune(state, self.keep_ratio, self.threshold, why="one-shot after training")
            state.install()


class IterativeCompression(CompressionCallback):
    """Prune -> retrain cycles: stage ``i`` keeps ``keep_ratios[i]`` for ``epochs_per_stage``
    epochs (keyed on the epoch index, so ``initial_epoch`` resumes the right stage); the last
    ratio stays for the remaining epochs.

    Args:
        keep_ratios: decreasing keep ratios, e.g. ``(0.5, 0.25, 0.1, 0.05)``.
        epochs_per_stage: retraining epochs per stage.
        **kwargs: basis settings, see `CompressionCallback`.
    """

    def __init__(self, keep_ratios=(0.5, 0.25, 0.1, 0.05), epochs_per_stage=1, **kwargs):
        super().__init__(**kwargs)
        ratios = [selection.validate_keep_ratio(r, "keep_ratios entry") for r in keep_ratios]
        if not ratios:
            raise ValueError("keep_ratios must not be empty.")
        if any(b > a for a, b in zip(ratios, ratios[1:])):
            raise ValueError(f"keep_ratios must be non-increasing, got {ratios}.")
        if not isinstance(epochs_per_stage, int) or epochs_per_stage < 1:
            raise ValueError(f"epochs_per_stage must be a positive int, got {epochs_per_stage!r}.")
        self.keep_ratios, self.epochs_per_stage = ratios, epochs_per_stage

    def _schedule_config(self):
        return {"keep_ratios": list(self.keep_ratios), "epochs_per_stage": self.epochs_per_stage}

    def _final_keep(self):
        return self.keep_ratios[-1]

    def stage_of(self, epoch):
        return min(epoch // self.epochs_per_stage, len(self.keep_ratios) - 1)

    def final_stage_epoch(self):
        """First epoch of the last stage (for early stopping that starts there)."""
        return (len(self.keep_ratios) - 1) * self.epochs_per_stage

    def on_train_begin(self, logs=None):
        self._install(self.state())
        self._last_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self._last_epoch = epoch
        state = self.state()
        stage = self.stage_of(epoch)
        target = self.keep_ratios[stage]
        if state.keep_ratio != target:
            self._prune(state, target, why=f"iterative stage {stage + 1}/{len(self.keep_ratios)} "
                        f"(epoch {epoch})")

    def on_train_end(self, logs=None):
        epoch = getattr(self, "_last_epoch", None)
        if epoch is None:
            return
        stage = self.stage_of(epoch)
        if stage < len(self.keep_ratios) - 1:
            warnings.warn(
                f"IterativeCompression ended in stage {stage + 1} of {len(self.keep_ratios)} "
                f"(keep {self.keep_ratios[stage]:g}, not the final {self.keep_ratios[-1]:g}): the "
                f"fit's last epoch was {epoch}, the last stage starts at epoch "
                f"{self.final_stage_epoch()} ({self.epochs_per_stage} epoch(s) per stage). Train "
                "for more epochs or give fewer stages.", UserWarning, stacklevel=2)


def _is_share(value):
    return isinstance(value, float)


def _validate_step(name, value, share_low_open):
    """An optimizer step (int >= 0) or a share of the fit (float in (0, 1], or [0, 1))."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be an int (an optimizer step) or a float (a share of "
                         f"the fit's steps). Received: {name}={value!r}")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{name} must be >= 0. Received: {name}={value!r}")
    if isinstance(value, float):
        ok = 0.0 < value <= 1.0 if share_low_open else 0.0 <= value < 1.0
        if not ok:
            span = "(0, 1]" if share_low_open else "[0, 1)"
            raise ValueError(f"A float {name} is a share of the fit's steps and must lie in "
                             f"{span}; pass an int for an optimizer step. Received: "
                             f"{name}={value!r}")


class GradualCompression(CompressionCallback):
    """Gradual pruning by optimizer step with a polynomial-decay sparsity schedule.

    The keep ratio goes from `initial_keep` at `begin_step` to `final_keep` at `end_step`
    (sparsity ``s_f + (s_i - s_f)(1 - t)^power``, as the TF Model Optimization Toolkit's
    ``PolynomialDecay``), re-selecting the masks every `frequency` steps; between updates and
    after `end_step` the masks are held by the constraints.

    The ramp's ends are optimizer steps (ints), or shares of the fit (floats): ``end_step=0.5``
    ends it half-way through ``fit()``'s steps (steps per epoch x epochs, as Keras passes them
    to callbacks, counted from the step at which this fit's epoch 0 starts, so a fit after an
    earlier one or resumed with ``initial_epoch`` keeps the same ramp). ``end_epoch=2`` ends it
    when epoch 2 of the fit begins. Once either end is a share or `end_epoch` is given, int
    steps also count from the start of the fit. If a fit ends before the ramp does, `on_train_end` warns with the
    keep ratio reached.

    Args:
        final_keep: final keep ratio in (0, 1].
        initial_keep: keep ratio at `begin_step` (1.0: start dense).
        begin_step: optimizer step (int; counted from the fit's start when the end is a share
            or `end_epoch`) or share of the fit (float in [0, 1)) where the ramp starts.
        end_step: optimizer step (int) or share of the fit (float in (0, 1]) where it ends.
            Default: 1000 unless `end_epoch` is given.
        frequency: steps between mask updates.
        power: exponent of the decay (3 as in Zhu & Gupta 2017).
        end_epoch: instead of `end_step`, the epoch of the fit at whose start the ramp ends.
        **kwargs: basis settings, see `CompressionCallback`.

    Example:

    >>> cb = GradualCompression(final_keep=0.05, end_step=0.5, basis="db4")   # doctest: +SKIP
    >>> model.fit(x, y, epochs=4, callbacks=[cb])   # final keep after 2 of the 4 epochs   # doctest: +SKIP
    """

    def __init__(self, final_keep, initial_keep=1.0, begin_step=0, end_step=None, frequency=100,
                 power=3.0, end_epoch=None, **kwargs):
        super().__init__(**kwargs)
        selection.validate_keep_ratio(final_keep, "final_keep")
        selection.validate_keep_ratio(initial_keep, "initial_keep")
        if final_keep > initial_keep:
            raise ValueError(f"final_keep ({final_keep}) must not exceed initial_keep "
                             f"({initial_keep}).")
        if end_step is not None and end_epoch is not None:
            raise ValueError("Pass end_step or end_epoch, not both. Received: "
                             f"end_step={end_step!r}, end_epoch={end_epoch!r}")
        if end_epoch is not None and (isinstance(end_epoch, bool) or not isinstance(end_epoch, int)
                                      or end_epoch < 1):
            raise ValueError(f"end_epoch must be a positive int. Received: end_epoch={end_epoch!r}")
        _validate_step("begin_step", begin_step, share_low_open=False)
        if end_step is not None:
            _validate_step("end_step", end_step, share_low_open=True)
        if not isinstance(frequency, int) or isinstance(frequency, bool) or frequency < 1:
            raise ValueError(f"frequency must be a positive int. Received: frequency={frequency!r}")
        if end_epoch is None and end_step is None:
            end_step = 1000
        if (end_step is not None and _is_share(begin_step) == _is_share(end_step)
                and end_step < begin_step):
            raise ValueError(f"Need end_step >= begin_step. Received: begin_step={begin_step!r}, "
                             f"end_step={end_step!r}")
        self.final_keep, self.initial_keep = float(final_keep), float(initial_keep)
        self.begin_step, self.end_step, self.end_epoch = begin_step, end_step, end_epoch
        self.frequency, self.power = frequency, float(power)
        # Optimizer steps of the ramp; shares and epochs are resolved at the fit's first epoch.
        self._steps = None if self._needs_fit() else (begin_step, end_step)

    def _schedule_config(self):
        return {"final_keep": self.final_keep, "initial_keep": self.initial_keep,
                "begin_step": self.begin_step, "end_step": self.end_step,
                "end_epoch": self.end_epoch, "frequency": self.frequency, "power": self.power}

    def _needs_fit(self):
        return self.end_epoch is not None or _is_share(self.begin_step) or _is_share(self.end_step)

    def resolve_steps(self, steps_per_epoch, epochs, origin=0):
        """Optimizer steps ``(begin, end)`` of the ramp in a fit of `epochs` epochs of
        `steps_per_epoch` steps whose epoch 0 starts at optimizer step `origin`."""
        if not self._needs_fit():
            return self.begin_step, self.end_step
        if not steps_per_epoch:
            raise ValueError(
                f"GradualCompression(begin_step={self.begin_step!r}, end_step={self.end_step!r}, "
                f"end_epoch={self.end_epoch!r}) needs the fit's steps per epoch, which Keras does "
                "not know for this input: pass steps_per_epoch= to fit(), or int steps.")
        total = int(steps_per_epoch) * int(epochs)

        def at(value):
            return origin + (int(round(value * total)) if _is_share(value) else int(value))

        begin = at(self.begin_step)
        end = origin + self.end_epoch * int(steps_per_epoch) if self.end_epoch is not None \
            else at(self.end_step)
        return begin, max(begin, end)

    def _final_keep(self):
        return self.final_keep

    def keep_at(self, step):
        """Scheduled keep ratio at optimizer step `step` (updates every `frequency` steps)."""
        if self._steps is None:
            raise ValueError("This schedule is given as a share of the fit or in epochs: its "
                             "steps are known once fit() starts (or call resolve_steps).")
        begin, end = self._steps
        if step < begin:
            return None
        if step >= end:
            s = end
        else:
            s = begin + (step - begin) // self.frequency * self.frequency
        return selection.polynomial_keep(s, self.initial_keep, self.final_keep, begin, end,
                                         self.power)

    def _update(self, step):
        target = self.keep_at(step)
        if target is None:
            return
        state = self.state()
        if state.keep_ratio is None and target >= 1.0:
            return
        if state.keep_ratio is None or abs(state.keep_ratio - target) > 1e-12:
            self._prune(state, target, why=f"gradual at step {step}")

    def on_train_begin(self, logs=None):
        self._install(self.state())
        if self._needs_fit():
            self._steps = None  # resolved at the first epoch, which says where the fit starts

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._step()
        if self._steps is None:
            params = self.params or {}
            steps = params.get("steps")
            self._steps = self.resolve_steps(
                steps, params.get("epochs", 1), origin=self._epoch_start - epoch * (steps or 0))
        self._update(self._epoch_start)

    def on_train_batch_end(self, batch, logs=None):
        # Keras passes the last step index of this execution within the epoch.
        self._update(self._epoch_start + batch + 1)

    def on_train_end(self, logs=None):
        state = constraints.get_state(self.model)
        if self._steps is None or state is None:
            return
        step, end = self._step(), self._steps[1]
        reached = state.keep_ratio if state.keep_ratio is not None else self.initial_keep
        if step < end and reached > self.final_keep + 1e-12:
            warnings.warn(
                f"GradualCompression ended at keep {reached:.4g}, not final_keep="
                f"{self.final_keep:g}: the fit stopped at optimizer step {step}, before the "
                f"ramp's end at step {end} (end_step={self.end_step!r}, end_epoch="
                f"{self.end_epoch!r}). Give end_step as a share of the fit (e.g. end_step=0.5) "
                "or end_epoch=, or train for more steps.", UserWarning, stacklevel=2)


class CompressionMetrics(keras.callbacks.Callback):
    """Adds coefficient sparsity and compression ratio to the epoch logs, and writes per-layer
    sparsity and the ratio as TensorBoard scalars (``<log_dir>/compression``).

    The ratio is measured, not estimated: the model is serialised in memory in the compressed
    format (without modifying it) every epoch.

    Args:
        log_dir: TensorBoard folder, or None (logs only).
        quantize, bits, codec, small_weights: storage options, as in `save_compressed` (same
            defaults: 6-bit k-means, lzma).
    """

    def __init__(self, log_dir=None, quantize=storage.DEFAULT_QUANTIZE, bits=storage.DEFAULT_BITS,
                 codec=storage.DEFAULT_CODEC, small_weights=storage.DEFAULT_SMALL_WEIGHTS):
        super().__init__()
        self._config = dict(log_dir=log_dir, quantize=quantize, bits=bits, codec=codec,
                            small_weights=small_weights)
        self._writer = None

    def get_config(self):
        return dict(self._config)

    def __deepcopy__(self, memo):
        return type(self)(**copy.deepcopy(self._config, memo))

    def on_epoch_end(self, epoch, logs=None):
        from dwt_keras.compression import sizes

        state = constraints.get_state(self.model)
        if state is None or state.keep_ratio is None and state.threshold is None:
            return
        c = self._config
        data, _ = storage.serialize_compressed(self.model, quantize=c["quantize"], bits=c["bits"],
                                               codec=c["codec"], small_weights=c["small_weights"],
                                               snap=False)
        ratio = sizes.dense_float32_bytes(self.model) / len(data)
        stats = state.layer_stats()
        sparsity = state.coefficient_sparsity()
        if logs is not None:
            logs["coefficient_sparsity"] = sparsity
            logs["compression_ratio"] = ratio
        if c["log_dir"]:
            import tensorflow as tf

            if self._writer is None:
                import os

                self._writer = tf.summary.create_file_writer(os.path.join(c["log_dir"], "compression"))
            with self._writer.as_default(step=epoch):
                tf.summary.scalar("compression/ratio", ratio)
                tf.summary.scalar("compression/coefficient_sparsity", sparsity)
                tf.summary.scalar("compression/compressed_bytes", len(data))
                for s in stats:
                    tf.summary.scalar(f"sparsity/{s['name']}", s["coefficient_sparsity"])
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
