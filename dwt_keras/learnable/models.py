"""The models of Wolter, Lin & Yao (ICANN 2020): the MNIST CNN and the sequence GRUs.

* `build_mnist_cnn`: the paper's MNIST CNN with a dense, Fastfood or learnable-wavelet `fc1`.
* `build_sequence_model`: a GRU, wavelet GRU or Fastfood GRU with a Dense read-out, for the
  adding and copy-memory problems and sequential MNIST.

Both are registered in `dwt_keras.experiments.registry` (`learnable_cnn`, `sequence_rnn`).
"""

import keras

from dwt_keras.learnable.fastfood import FastfoodDense
from dwt_keras.learnable.recurrent import GATES, FastfoodGRU, WaveletGRU
from dwt_keras.learnable.wavelet_dense import WaveletDense

FC1_CHOICES = ("dense", "wavelet", "fastfood")
RNN_CHOICES = ("gru", "wavelet", "fastfood")

__all__ = ["FC1_CHOICES", "RNN_CHOICES", "build_mnist_cnn", "build_sequence_model"]


def build_mnist_cnn(
    fc1="wavelet",
    input_shape=(28, 28, 1),
    num_classes=10,
    dense_units=500,
    levels=6,
    filter_length=6,
    init_wavelet="haar",
    wavelet_loss_weight=1.0,
    seed=0,
):
    """The paper's MNIST CNN: conv(20, 5x5) - pool - conv(50, 5x5) - pool - fc1 - ReLU - fc2.

    `fc1` is `Dense(dense_units)` (the paper: 500; 431,080 parameters in all), or a square
    `WaveletDense` / `FastfoodDense` of the flattened width (800 for 28x28 inputs), followed by
    `fc2 = Dense(num_classes)`. With the defaults the wavelet model has 36,030 parameters.
    ReLU follows each pooling (as in PyTorch's MNIST example the paper builds on). The model
    returns logits.

    Args:
        fc1: `"dense"`, `"wavelet"` or `"fastfood"`.
        input_shape, num_classes: image shape and number of classes.
        dense_units: width of the dense `fc1`.
        levels, filter_length, init_wavelet, wavelet_loss_weight, seed: `WaveletDense` arguments
            (`seed` also seeds the Fastfood layer).

    Returns:
        An uncompiled `keras.Model`.
    """
    if fc1 not in FC1_CHOICES:
        raise ValueError(f"fc1={fc1!r} is not valid. Valid choices: {', '.join(FC1_CHOICES)}.")
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(20, 5, name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(50, 5, name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.ReLU()(x)
    x = layers.Flatten(name="flatten")(x)
    width = int(x.shape[-1])
    if fc1 == "dense":
        x = layers.Dense(dense_units, name="fc1")(x)
    elif fc1 == "wavelet":
        x = WaveletDense(
            width,
            levels=levels,
            filter_length=filter_length,
            init_wavelet=init_wavelet,
            wavelet_loss_weight=wavelet_loss_weight,
            seed=seed,
            name="fc1",
        )(x)
    else:
        x = FastfoodDense(width, seed=seed, name="fc1")(x)
    x = layers.ReLU()(x)
    outputs = layers.Dense(num_classes, name="fc2", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"mnist_cnn_{fc1}")


def build_sequence_model(
    rnn="wavelet",
    input_shape=(150, 2),
    output_units=1,
    return_sequences=False,
    hidden=512,
    compress=GATES,
    levels=None,
    filter_length=6,
    init_wavelet="haar",
    wavelet_loss_weight=1.0,
    seed=0,
):
    """A one-layer GRU (plain, wavelet or Fastfood) followed by a Dense read-out.

    Args:
        rnn: `"gru"` (keras.layers.GRU), `"wavelet"` (WaveletGRU) or `"fastfood"` (FastfoodGRU).
        input_shape: `(time, features)`.
        output_units: width of the read-out (1 for adding; classes for copy / sMNIST).
        return_sequences: read out every step (copy task) or the last one.
        hidden: hidden size.
        compress, levels, filter_length, init_wavelet, wavelet_loss_weight, seed: structured-cell
            arguments (ignored for `"gru"`).

    Returns:
        An uncompiled `keras.Model` (logits / regression output in float32).
    """
    if rnn not in RNN_CHOICES:
        raise ValueError(f"rnn={rnn!r} is not valid. Valid choices: {', '.join(RNN_CHOICES)}.")
    inputs = keras.Input(input_shape, name="sequence")
    if rnn == "gru":
        x = keras.layers.GRU(hidden, return_sequences=return_sequences, name="gru")(inputs)
    elif rnn == "wavelet":
        x = WaveletGRU(
            hidden,
            compress=compress,
            levels=levels,
            filter_length=filter_length,
            init_wavelet=init_wavelet,
            wavelet_loss_weight=wavelet_loss_weight,
            seed=seed,
            return_sequences=return_sequences,
            name="wavelet_gru",
        )(inputs)
    else:
        x = FastfoodGRU(hidden, compress=compress, seed=seed, return_sequences=return_sequences, name="fastfood_gru")(
            inputs
        )
    outputs = keras.layers.Dense(output_units, name="readout", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"{rnn}_rnn")
