"""`tf.distribute` strategies behind the apps' `--strategy` flag.

* `default`: TensorFlow's default (no-op) strategy: one device.
* `mirrored`: `tf.distribute.MirroredStrategy` over the local GPUs, or over logical CPU devices
  when `configure_logical_cpus(n)` ran before TensorFlow initialised (how CI tests it).
* `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy` from `TF_CONFIG`. Keras 3's
  `Model.fit` does not work with it across several workers (keras-team/keras#20585,
  tensorflow/tensorflow#72388), so a multi-worker `TF_CONFIG` is refused with a clear error
  instead of training with a broken setup; without a cluster there is nothing to distribute, so
  that is refused too.
* `tpu`: `tf.distribute.TPUStrategy` after connecting to the TPU named by `tpu_address` (or
  `$TPU_NAME`); an error when no TPU can be reached.

Example:

```python
strategy = get_strategy("mirrored")
with strategy.scope():
    model = build_model()
    model.compile(...)
model.fit(train_ds, ...)
```
"""

import json
import os

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

# One MirroredStrategy per device set and process: two instances in one process (e.g. the runs of
# --cv_folds / --ensemble) reuse collective-op keys, and the second model's all-reduce then fails
# with "Shape mismatch in the collective instance" (observed with TF 2.21).
_MIRRORED = {}

MULTI_WORKER_UNSUPPORTED = (
    "Keras 3's Model.fit does not support tf.distribute.MultiWorkerMirroredStrategy across "
    "several workers (keras-team/keras#20585, tensorflow/tensorflow#72388; reproduced with "
    "TF 2.21 / Keras 3.15: fit() fails with 'Attempt to convert a value (PerReplica...) to a "
    "Tensor'). Train on one "
    "machine with --strategy mirrored (all local GPUs), or use KerasTuner's chief/worker mode "
    "(apps/tune.py with KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT) "
    "to spread a search over machines."
)


def configure_logical_cpus(n):
    """Splits the first physical CPU into `n` logical devices (for `mirrored` without GPUs).

    Must run before TensorFlow initialises its devices, i.e. before any op, model or dataset is
    created in this process; tests therefore call it at the top of a fresh subprocess.

    Args:
        n: number of logical CPU devices, >= 1.

    Raises:
        RuntimeError: when TensorFlow has already initialised its devices.
    """
    import tensorflow as tf

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError as e:
        raise RuntimeError(
            "configure_logical_cpus() must be called before TensorFlow initialises its devices "
            "(before creating any tensor, model or dataset in this process)."
        ) from e
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _tf_config_workers():
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (ValueError, AttributeError) as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def get_strategy(name="default", devices=None, tpu_address=None):
    """Returns the `tf.distribute.Strategy` named `name`.

    Args:
        name: one of `STRATEGIES`.
        devices: for `mirrored`, an explicit device list; default: all local GPUs, else all
            logical CPU devices when there are several (see `configure_logical_cpus`), else the
            one CPU.
        tpu_address: for `tpu`, the TPU name or `grpc://` address (default `$TPU_NAME`, then
            the local TPU).

    Returns:
        A `tf.distribute.Strategy`; `strategy.num_replicas_in_sync` tells how many replicas
        share each batch (scale the global batch size and, if wanted, the learning rate).
        `mirrored` returns the same instance for the same devices within a process.

    Raises:
        ValueError: unknown name, or a strategy that cannot work here (with the reason).
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}. Valid choices: {', '.join(STRATEGIES)}.")
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            cpus = tf.config.list_logical_devices("CPU")
            devices = [d.name for d in gpus] if gpus else [d.name for d in cpus]
        key = tuple(devices)
        if key not in _MIRRORED:
            _MIRRORED[key] = tf.distribute.MirroredStrategy(devices=list(devices))
        return _MIRRORED[key]
    if name == "multi_worker":
        workers = _tf_config_workers()
        if workers > 1:
            raise ValueError(f"--strategy multi_worker with {workers} workers in TF_CONFIG: "
                             + MULTI_WORKER_UNSUPPORTED)
        raise ValueError(
            "--strategy multi_worker needs a cluster described by the TF_CONFIG environment "
            "variable (none with several workers is set), and even then: "
            + MULTI_WORKER_UNSUPPORTED
        )
    # tpu
    address = tpu_address if tpu_address is not None else os.environ.get("TPU_NAME", "")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as e:  # noqa: BLE001 -- every failure here means "no usable TPU"
        raise ValueError(
            f"--strategy tpu: no TPU could be reached (TPU_NAME={address!r}): "
            f"{type(e).__name__}: {str(e)[:200]}. Run on a TPU VM or set TPU_NAME; "
            f"choose --strategy default or mirrored elsewhere."
        ) from e
    return tf.distribute.TPUStrategy(resolver)


def describe_strategy(strategy):
    """A JSON-ready description of a strategy for reports."""
    try:
        devices = list(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError):
        # The default strategy has no device list: it runs wherever TensorFlow places ops.
        devices = []
    return {
        "class": type(strategy).__name__,
        "num_replicas_in_sync": int(strategy.num_replicas_in_sync),
        "devices": [str(d) for d in devices],
    }


def mixed_precision_policy():
    """The Keras mixed-precision policy for this machine: `"mixed_float16"` where a GPU is
    visible, else `"mixed_bfloat16"` (CPUs have no fast float16 path)."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
