"""Training-split data augmentation behind `--augment`, built from Keras preprocessing layers.

* `mnist`: small rotations (±`rotation_degrees`), shifts (±`shift` of the image size, filled
  with zeros, the background of MNIST-like digits) and additive Gaussian noise (std `noise_std`).
* `cifar`: zero-pad by `crop_padding` pixels, random crop back to the image size, random
  horizontal flip (the standard CIFAR recipe).
* `auto`: `cifar` for colour images, `mnist` for grey-scale ones.
* `none`: no augmentation.
* `crop_flip`: an alias of `cifar` (the name `dwt_keras.data.make_datasets` uses).

Augmentation runs in the `tf.data` pipeline of the training split only (validation and test data
are never augmented), so the trained model itself holds no preprocessing layers and compresses,
saves and exports exactly like an un-augmented one.
"""

import keras

AUGMENTATIONS = ("none", "auto", "mnist", "cifar", "crop_flip")
_ALIASES = {"crop_flip": "cifar"}  # the name dwt_keras.data uses for the same recipe


def resolve_augment(kind, image_shape=None):
    """Maps `auto` to `mnist` (1 channel) or `cifar` (3 channels); validates the name."""
    kind = "none" if kind in (None, False, "") else kind
    if kind not in AUGMENTATIONS:
        raise ValueError(f"Unknown augment {kind!r}. Valid choices: {', '.join(AUGMENTATIONS)}.")
    kind = _ALIASES.get(kind, kind)
    if kind != "auto":
        return kind
    if image_shape is None:
        raise ValueError("augment='auto' needs the image shape to choose mnist or cifar.")
    return "cifar" if int(image_shape[-1]) == 3 else "mnist"


def build_augmentation(kind, image_shape, seed=None, rotation_degrees=10.0, shift=0.1,
                       noise_std=0.05, crop_padding=4):
    """Returns a `keras.Sequential` of preprocessing layers, or `None` for `none`.

    Args:
        kind: one of `AUGMENTATIONS`.
        image_shape: `(H, W, C)` of the images.
        seed: seed of the random layers (reproducible augmentation).
        rotation_degrees, shift, noise_std: the `mnist` recipe.
        crop_padding: the `cifar` recipe.

    Example:

    ```python
    aug = build_augmentation("mnist", (28, 28, 1), seed=0)
    train_ds = augment_dataset(train_ds, aug)
    ```
    """
    kind = resolve_augment(kind, image_shape)
    if kind == "none":
        return None
    h, w, c = (int(v) for v in image_shape)
    if kind == "mnist":
        layers = [
            keras.layers.RandomRotation(rotation_degrees / 360.0, fill_mode="constant",
                                        fill_value=0.0, seed=seed),
            keras.layers.RandomTranslation(shift, shift, fill_mode="constant", fill_value=0.0,
                                           seed=None if seed is None else seed + 1),
            keras.layers.GaussianNoise(noise_std, seed=None if seed is None else seed + 2),
        ]
    else:
        layers = [
            keras.layers.ZeroPadding2D(crop_padding),
            keras.layers.RandomCrop(h, w, seed=seed),
            keras.layers.RandomFlip("horizontal", seed=None if seed is None else seed + 1),
        ]
    return keras.Sequential([keras.Input((h, w, c)), *layers], name=f"augment_{kind}")


def augment_dataset(ds, augmenter):
    """Applies `augmenter` (in training mode) to the images of a batched `(x, y)` dataset."""
    if augmenter is None:
        return ds
    import tensorflow as tf

    def apply(x, y):
        return augmenter(x, training=True), y

    return ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
