"""Learning-rate schedules behind `--lr_schedule`, as Keras `LearningRateSchedule` objects.

Every schedule is a function of the optimizer's step (`optimizer.iterations`), which Keras passes
to it on every update, so it continues correctly when training resumes (`initial_epoch`), when a
callback list is deep-copied (KerasTuner), and under `tf.distribute`.

* `constant` (alias `none`): the plain learning rate (a float).
* `step`: multiplied by `step_factor` (0.1) at 50% and again at 75% of the training steps.
* `exponential`: `lr * final_fraction ** (step / total_steps)`, smooth, per step
  (`keras.optimizers.schedules.ExponentialDecay`).
* `cosine`: half a cosine from `lr` down to `lr * final_fraction`
  (`keras.optimizers.schedules.CosineDecay`).
* `cyclical`: triangular cyclical learning rate (Smith, 2017) between `lr * min_fraction` and `lr`,
  a half cycle lasting `cycle_epochs / 2` epochs (`CyclicalLearningRate`).
* `warmup_cosine`: a linear warm-up from 0 to `lr`, then a cosine decay to 0 (the transformers'
  recipe; `keras.optimizers.schedules.CosineDecay` with `warmup_steps`).

`LinearWarmup` puts a linear warm-up in front of any of them; `make_learning_rate` builds the
schedule of a whole training phase from its settings (warm-up, schedule, per-epoch step decay).
"""

import math

import keras
from keras import ops

LR_SCHEDULES = ("constant", "none", "step", "exponential", "cosine", "cyclical", "warmup_cosine")
#: The schedule with its own warm-up: `make_learning_rate` adds none in front of it.
WARMUP_COSINE = "warmup_cosine"
CYCLICAL_MODES = ("triangular", "triangular2", "exp_range")


@keras.saving.register_keras_serializable(package="dwt_keras")
class CyclicalLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Cyclical learning rate (Smith, "Cyclical Learning Rates for Training Neural Networks").

    The rate goes linearly from `min_lr` up to `max_lr` in `step_size` steps and back down in
    another `step_size` steps, then repeats. `triangular2` halves the amplitude every cycle;
    `exp_range` multiplies it by `gamma ** step`.

    Args:
        min_lr: the lower bound.
        max_lr: the upper bound (> `min_lr`).
        step_size: steps per half cycle (Smith suggests 2-10 epochs' worth).
        mode: `"triangular"`, `"triangular2"` or `"exp_range"`.
        gamma: decay base for `exp_range`.

    Call arguments:
        step: the optimizer step (a scalar tensor or int).

    Example:

    ```python
    lr = CyclicalLearningRate(1e-4, 1e-2, step_size=2 * steps_per_epoch)
    model.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.9), ...)
    ```
    """

    def __init__(self, min_lr, max_lr, step_size, mode="triangular", gamma=1.0, name=None):
        if not 0 <= min_lr < max_lr:
            raise ValueError(f"Need 0 <= min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}.")
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}.")
        if mode not in CYCLICAL_MODES:
            raise ValueError(f"Unknown mode {mode!r}. Valid choices: {', '.join(CYCLICAL_MODES)}.")
        self.min_lr = float(min_lr)
        self.max_lr = float(max_lr)
        self.step_size = int(step_size)
        self.mode = mode
        self.gamma = float(gamma)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        cycle = ops.floor(1.0 + step / (2.0 * self.step_size))
        x = ops.abs(step / self.step_size - 2.0 * cycle + 1.0)
        amplitude = (self.max_lr - self.min_lr) * ops.maximum(0.0, 1.0 - x)
        if self.mode == "triangular2":
            amplitude = amplitude / ops.power(2.0, cycle - 1.0)
        elif self.mode == "exp_range":
            amplitude = amplitude * ops.power(self.gamma, step)
        return self.min_lr + amplitude

    def get_config(self):
        return {
            "min_lr": self.min_lr,
            "max_lr": self.max_lr,
            "step_size": self.step_size,
            "mode": self.mode,
            "gamma": self.gamma,
            "name": self.name,
        }


def make_lr_schedule(name, lr, steps_per_epoch, epochs, step_factor=0.1, final_fraction=0.01,
                     min_fraction=0.1, cycle_epochs=4, cyclical_mode="triangular"):
    """Builds the learning-rate schedule named `name`.

    Args:
        name: one of `LR_SCHEDULES`.
        lr: the base (peak) learning rate.
        steps_per_epoch: optimizer steps per epoch (`ceil(n_train / global_batch_size)`).
        epochs: training epochs the schedule spans.
        step_factor: the factor of each drop of `step`.
        final_fraction: the final rate of `exponential` and `cosine` as a share of `lr`.
        min_fraction: the lower bound of `cyclical` as a share of `lr`.
        cycle_epochs: the length of one full `cyclical` cycle in epochs.
        cyclical_mode: see `CyclicalLearningRate`.

    Returns:
        A float (`constant`) or a `keras.optimizers.schedules.LearningRateSchedule`.

    Example:

    ```python
    sched = make_lr_schedule("cosine", 1e-3, steps_per_epoch=1688, epochs=10)
    optimizer = keras.optimizers.Adam(sched)
    ```
    """
    if name not in LR_SCHEDULES:
        raise ValueError(f"Unknown lr_schedule {name!r}. Valid choices: {', '.join(LR_SCHEDULES)}.")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}.")
    if name in ("constant", "none"):
        return float(lr)
    if name == WARMUP_COSINE:
        raise ValueError("lr_schedule 'warmup_cosine' has its warm-up built in: build it with "
                         "make_learning_rate(...). Received: lr_schedule='warmup_cosine'")
    if int(steps_per_epoch) < 1 or int(epochs) < 1:
        raise ValueError(
            f"lr_schedule {name!r} needs steps_per_epoch >= 1 and epochs >= 1, "
            f"got {steps_per_epoch} and {epochs}."
        )
    steps_per_epoch, epochs = int(steps_per_epoch), int(epochs)
    total = steps_per_epoch * epochs
    if name == "step":
        b1, b2 = max(1, total // 2), max(2, (3 * total) // 4)
        if b2 <= b1:
            b2 = b1 + 1
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [b1, b2], [float(lr), float(lr) * step_factor, float(lr) * step_factor**2]
        )
    if name == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            float(lr), decay_steps=total, decay_rate=float(final_fraction), staircase=False
        )
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            float(lr), decay_steps=total, alpha=float(final_fraction)
        )
    half = max(1, int(math.ceil(cycle_epochs * steps_per_epoch / 2)))
    return CyclicalLearningRate(float(lr) * min_fraction, float(lr), half, mode=cyclical_mode)


def current_learning_rate(optimizer):
    """The learning rate `optimizer` applies at its current step, as a Python float."""
    lr = optimizer.learning_rate  # Keras 3 evaluates a schedule at optimizer.iterations here
    return float(keras.ops.convert_to_numpy(lr))


@keras.saving.register_keras_serializable(package="dwt_keras")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """A linear warm-up from 0 to `target` over `warmup_steps`, then `after`.

    `after` (a float or a `LearningRateSchedule`) is evaluated at
    `step - warmup_steps`, so its own decay starts when the warm-up ends.

    Args:
        after: the learning rate or schedule after the warm-up.
        warmup_steps: steps of the warm-up (>= 1).
        target: the rate reached at the end of the warm-up (the base `lr`).

    Example:

    ```python
    lr = LinearWarmup(make_lr_schedule("step", 1e-3, 100, 9), warmup_steps=100, target=1e-3)
    ```
    """

    def __init__(self, after, warmup_steps, target):
        if int(warmup_steps) < 1:
            raise ValueError(f"`warmup_steps` must be >= 1. Received: warmup_steps={warmup_steps}")
        self.after = after
        self.warmup_steps = int(warmup_steps)
        self.target = float(target)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.target * step / float(self.warmup_steps)
        rest = step - float(self.warmup_steps)
        after = self.after(rest) if callable(self.after) else self.after
        after = keras.ops.cast(after, "float32")
        return keras.ops.where(step < float(self.warmup_steps), warm, after)

    def get_config(self):
        after = self.after
        if isinstance(after, keras.optimizers.schedules.LearningRateSchedule):
            after = keras.saving.serialize_keras_object(after)
        return {"after": after, "warmup_steps": self.warmup_steps, "target": self.target}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["after"], dict):
            config["after"] = keras.saving.deserialize_keras_object(config["after"])
        return cls(**config)


def make_learning_rate(lr, steps_per_epoch, epochs, schedule="constant", warmup_epochs=0,
                       lr_decay=1.0):
    """The learning rate of one training phase, as a function of the optimizer step.

    Args:
        lr: the base (peak) learning rate.
        steps_per_epoch: optimizer steps per epoch.
        epochs: the epochs of the phase the schedule spans.
        schedule: one of `LR_SCHEDULES`. `warmup_cosine`: a linear warm-up from 0 to `lr` over
            `warmup_epochs`, then a cosine decay to 0. Any other: `make_lr_schedule(schedule)`
            over the epochs after `warmup_epochs` of linear warm-up (none when 0).
        warmup_epochs: epochs of linear warm-up.
        lr_decay: a per-epoch multiplicative step decay of the `constant` schedule (1: none).

    Every schedule is keyed on the optimizer's iteration count, so a resumed run continues it
    exactly.

    Example:

    ```python
    lr = make_learning_rate(1e-3, steps_per_epoch=352, epochs=100, schedule="warmup_cosine",
                            warmup_epochs=5)
    ```
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"`lr_schedule` must be one of {', '.join(LR_SCHEDULES)}. "
                         f"Received: lr_schedule={schedule!r}")
    if not 0.0 < float(lr_decay) <= 1.0:
        raise ValueError(f"`lr_decay` must be in (0, 1] (1: no decay). Received: lr_decay={lr_decay}")
    steps_per_epoch, epochs = max(1, int(steps_per_epoch)), max(1, int(epochs))
    if float(lr_decay) < 1.0:
        if schedule not in ("constant", "none"):
            raise ValueError(
                f"`lr_decay` (a per-epoch step decay) and `lr_schedule` are two schedules; set "
                f"lr_decay=1 or lr_schedule='constant'. Received: lr_decay={lr_decay}, "
                f"lr_schedule={schedule!r}")
        return keras.optimizers.schedules.ExponentialDecay(
            float(lr), decay_steps=steps_per_epoch, decay_rate=float(lr_decay), staircase=True)
    total = epochs * steps_per_epoch
    warmup = min(int(warmup_epochs) * steps_per_epoch, total - 1)
    if schedule == WARMUP_COSINE:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0, decay_steps=max(1, total - warmup), alpha=0.0,
            warmup_target=float(lr), warmup_steps=warmup)
    after = make_lr_schedule(schedule, float(lr), steps_per_epoch=steps_per_epoch,
                             epochs=max(1, epochs - int(warmup_epochs)))
    return LinearWarmup(after, warmup, float(lr)) if warmup > 0 else after
