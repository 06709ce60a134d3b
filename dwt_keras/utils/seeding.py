"""One place to seed Python, NumPy, TensorFlow and Keras."""

import keras


def set_seed(seed):
    """Seeds Python's `random`, NumPy, TensorFlow and Keras.

    Args:
        seed: a non-negative integer.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    keras.utils.set_random_seed(seed)
