"""Training-split data augmentation behind `--augment`: one vocabulary for every recipe.

`--augment` is a comma-separated list of:

* `crop_flip`: zero-pad by 4 pixels, random crop back to the image size, random horizontal flip,
  per example with `tf.image` (`example_augmentation`, applied before batching).
* `cifar`: the same recipe as Keras preprocessing layers, per batch.
* `mnist`: small rotations (±`rotation_degrees`), shifts (±`shift` of the image size, filled
  with zeros, the background of MNIST-like digits) and additive Gaussian noise (std `noise_std`).
* `auto`: `cifar` for colour images, `mnist` for grey-scale ones.
* `randaugment`: Keras' `RandAugment` (values in [0, 1]).
* `mixup`, `cutmix`: Keras' `MixUp` / `CutMix` on one-hot labels; with both, one of the two
  per batch.
* `none`: no augmentation.

Augmentation runs in the `tf.data` pipeline of the training split only (validation and test data
are never augmented), so the trained model itself holds no preprocessing layers and compresses,
saves and exports exactly like an un-augmented one.
"""

import keras

AUGMENTATIONS = ("none", "auto", "mnist", "cifar", "crop_flip", "randaugment", "mixup", "cutmix")
#: The batch-level recipes built from Keras layers (at most one of them per run).
LAYER_RECIPES = ("auto", "mnist", "cifar")
#: Augmentations that mix examples and therefore need one-hot labels.
MIXERS = ("mixup", "cutmix")


def parse_augment(spec):
    """The augmentations of a comma-separated `spec` (`None`/"none": none), validated.

    Returns:
        A tuple of names from `AUGMENTATIONS`, without `none`.
    """
    if spec in (None, False, ""):
        return ()
    items = spec if isinstance(spec, (tuple, list)) else str(spec).split(",")
    names = tuple(dict.fromkeys(a.strip() for a in items if a.strip() and a.strip() != "none"))
    for name in names:
        if name not in AUGMENTATIONS:
            raise ValueError(f"`augment` entries must be among {', '.join(AUGMENTATIONS)}. "
                             f"Received: augment={spec!r}")
    recipes = [n for n in names if n in LAYER_RECIPES]
    if len(recipes) > 1:
        raise ValueError(f"`augment` takes at most one of {', '.join(LAYER_RECIPES)}. "
                         f"Received: augment={spec!r}")
    return names


def needs_one_hot(spec):
    """True when the augmentation mixes examples (mixup, cutmix): labels must be one-hot."""
    return any(n in MIXERS for n in parse_augment(spec))


def resolve_augment(kind, image_shape=None):
    """Maps `auto` to `mnist` (1 channel) or `cifar` (3 channels); validates the name."""
    kind = "none" if kind in (None, False, "") else kind
    if kind not in AUGMENTATIONS:
        raise ValueError(f"`augment` must be one of {', '.join(AUGMENTATIONS)}. "
                         f"Received: augment={kind!r}")
    if kind != "auto":
        return kind
    if image_shape is None:
        raise ValueError("augment='auto' needs the image shape to choose mnist or cifar.")
    return "cifar" if int(image_shape[-1]) == 3 else "mnist"


def example_augmentation(spec, crop_padding=4):
    """The per-example part of `spec` (`crop_flip`) as `fn(image) -> image`, or None.

    Pass it to `dwt_keras.data.make_datasets(..., augment=fn)`: it runs before batching.
    """
    if "crop_flip" not in parse_augment(spec):
        return None
    import tensorflow as tf

    def crop_flip(image):
        shape = image.shape
        padded = tf.image.pad_to_bounding_box(image, crop_padding, crop_padding,
                                              shape[0] + 2 * crop_padding,
                                              shape[1] + 2 * crop_padding)
        return tf.image.random_flip_left_right(tf.image.random_crop(padded, shape))

    return crop_flip


def build_augmentation(kind, image_shape, seed=None, rotation_degrees=10.0, shift=0.1,
                       noise_std=0.05, crop_padding=4):
    """Returns a `keras.Sequential` of preprocessing layers, or `None` for `none`.

    Args:
        kind: one of `LAYER_RECIPES` or `none`.
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
    if kind not in ("mnist", "cifar"):
        raise ValueError(f"build_augmentation builds the layer recipes {LAYER_RECIPES}. "
                         f"Received: kind={kind!r}")
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


def augment_training_dataset(ds, spec, image_shape, seed=0):
    """Applies the batch-level augmentations of `spec` to a batched training `(x, y)` dataset.

    The Keras-layer recipe (`mnist`, `cifar`, `auto`), then `randaugment`, then `mixup` /
    `cutmix` (whose labels must already be one-hot: see `needs_one_hot`). `crop_flip` is not
    applied here: it is the per-example `example_augmentation`.
    """
    import tensorflow as tf

    names = parse_augment(spec)
    recipe = next((n for n in names if n in LAYER_RECIPES), None)
    if recipe is not None:
        ds = augment_dataset(ds, build_augmentation(recipe, image_shape, seed=seed))
    layers = {}
    if "randaugment" in names:
        layers["ra"] = keras.layers.RandAugment(value_range=(0.0, 1.0), seed=seed)
    mixers = []
    if "mixup" in names:
        mixers.append(keras.layers.MixUp(alpha=0.2, seed=seed))
    if "cutmix" in names:
        mixers.append(keras.layers.CutMix(factor=1.0, seed=seed))
    if not layers and not mixers:
        return ds

    def mix(layer, x, y):
        out = layer({"images": x, "labels": y}, training=True)
        return out["images"], out["labels"]

    @tf.autograph.experimental.do_not_convert
    def augment(x, y):
        if "ra" in layers:
            x = layers["ra"](x, training=True)
        if len(mixers) == 1:
            x, y = mix(mixers[0], x, y)
        elif len(mixers) == 2:
            # One of MixUp / CutMix per batch, with equal probability.
            pick = tf.random.stateless_uniform([], seed=[seed, 7]) < 0.5
            x, y = tf.cond(pick, lambda: mix(mixers[0], x, y), lambda: mix(mixers[1], x, y))
        return x, y

    return ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
