"""Reference architectures (the one name registry is `dwt_keras.experiments.registry`)."""

import keras
from keras import layers


def lenet300(input_shape=(28, 28, 1), num_classes=10, name="lenet300"):
    """LeNet-300-100 (LeCun et al. 1998; Han et al. 2015): Flatten -> 300 -> 100 -> classes.

    266,610 parameters for MNIST. The first Dense layer sees the flattened image, so its kernel
    has image geometry (each unit's 784 input weights are a 28x28 receptive field).

    Example:

    >>> lenet300().count_params()
    266610
    """
    return mlp(input_shape, num_classes, widths=(300, 100), name=name)


def mlp(input_shape=(28, 28, 1), num_classes=10, widths=(300, 100), activation="relu",
        name="mlp"):
    """A multilayer perceptron on flattened images.

    Args:
        input_shape: image shape `(H, W, C)`.
        num_classes: number of output logits.
        widths: hidden layer widths, e.g. `(512, 256)`.
        activation: hidden activation.
        name: model name.
    """
    widths = tuple(int(w) for w in widths)
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"mlp widths must be positive integers, got {widths}.")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Flatten(name="flatten")(inputs)
    for i, w in enumerate(widths):
        x = layers.Dense(w, activation=activation, name=f"fc{i + 1}")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def lenet5(input_shape=(28, 28, 1), num_classes=10, name="lenet5"):
    """The Caffe "LeNet-5" used by Han et al. (Deep Compression): 431,080 parameters on MNIST.

    conv 20@5x5 -> maxpool 2 -> conv 50@5x5 -> maxpool 2 -> flatten (4x4x50 = 800) ->
    dense 500 (ReLU) -> dense classes.

    Example:

    >>> lenet5().count_params()
    431080
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Conv2D(20, 5, name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(50, 5, name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(500, activation="relu", name="fc1")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _zero_pad_shortcut(x, filters, stride, name):
    """He et al.'s option A: subsample by `stride` and append zero channels (no parameters).

    Built from core layers only (a 1x1 max-pool with a stride picks ``x[::s, ::s]``; the channel
    axis is padded by a ``ZeroPadding2D`` after moving it to a spatial position), so the model
    serialises without custom objects.
    """
    if stride != 1:
        x = layers.MaxPooling2D(pool_size=1, strides=stride, name=f"{name}_subsample")(x)
    extra = filters - x.shape[-1]
    if extra > 0:
        x = layers.Permute((3, 1, 2), name=f"{name}_to_cfirst")(x)
        x = layers.ZeroPadding2D(((extra // 2, extra - extra // 2), (0, 0)),
                                 name=f"{name}_pad_channels")(x)
        x = layers.Permute((2, 3, 1), name=f"{name}_to_clast")(x)
    return x


def _basic_block(x, filters, stride, name, shortcut_kind="projection"):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if (stride != 1 or shortcut.shape[-1] != filters) and shortcut_kind == "zero_pad":
        shortcut = _zero_pad_shortcut(shortcut, filters, stride, name)
    elif stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                 name=f"{name}_proj")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet18(input_shape=(32, 32, 3), num_classes=10, width=64, name="resnet18"):
    """ResNet-18, CIFAR variant (He et al. 2016): a 3x3 stem (no max-pool), four stages of two
    basic blocks (widths `width * (1, 2, 4, 8)`, strides 1, 2, 2, 2), global average pooling and
    a Dense classifier. 11.17M parameters at `width=64` for CIFAR-10.

    Args:
        input_shape: image shape.
        num_classes: number of logits.
        width: channels of the first stage (64 is the standard model; smaller for tests).
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, mult in enumerate((1, 2, 4, 8)):
        for block in range(2):
            stride = 2 if (stage > 0 and block == 0) else 1
            x = _basic_block(x, width * mult, stride, f"s{stage + 1}b{block + 1}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet20(input_shape=(32, 32, 3), num_classes=10, width=16, depth=20, shortcut="zero_pad",
             name=None):
    """The CIFAR ResNet of He et al. (2016, section 4.2): a 3x3 stem, three stages of
    ``(depth - 2) / 6`` basic blocks (widths `width * (1, 2, 4)`, strides 1, 2, 2), global
    average pooling and a Dense classifier. ResNet-20 (``depth=20``, ``width=16``) has 0.27M
    parameters (271,098 with the paper's parameter-free shortcuts).

    Args:
        input_shape: image shape.
        num_classes: number of logits.
        width: channels of the first stage (16 in the paper; smaller for CPU budgets).
        depth: ``6 n + 2`` layers: 20, 32, 44, 56, 110.
        shortcut: ``"zero_pad"`` (option A of the paper: subsampling and zero channels) or
            ``"projection"`` (option B: 1x1 convolution and BatchNorm where the shape changes).
        name: model name (default ``f"resnet{depth}"``).

    Example:

    >>> resnet20().count_params()
    271098
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 (20, 32, 44, 56, 110). Received: depth={depth!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer. Received: width={width!r}")
    if shortcut not in ("zero_pad", "projection"):
        raise ValueError("shortcut must be 'zero_pad' or 'projection'. "
                         f"Received: shortcut={shortcut!r}")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, mult in enumerate((1, 2, 4)):
        for block in range((depth - 2) // 6):
            stride = 2 if (stage > 0 and block == 0) else 1
            x = _basic_block(x, width * mult, stride, f"s{stage + 1}b{block + 1}", shortcut)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


def small_cnn(input_shape=(32, 32, 3), num_classes=10, width=16, seed=None, name="small_cnn"):
    """Five 3x3 conv layers (width, width, 2w, 2w, 4w), two max-pools, GAP, dense logits.

    The model of the spectral-truncation convergence study.
    """
    init = keras.initializers.GlorotUniform(seed=seed)
    inp = keras.Input(tuple(input_shape))
    x = inp
    for i, ch in enumerate((width, width, 2 * width, 2 * width, 4 * width)):
        x = layers.Conv2D(ch, 3, padding="same", activation="relu", kernel_initializer=init)(x)
        if i in (1, 3):
            x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(num_classes, kernel_initializer=init)(x)
    return keras.Model(inp, out, name=name)
