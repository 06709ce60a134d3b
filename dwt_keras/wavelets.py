"""The public name of the wavelet transforms: ``dwt_keras.wavelets`` re-exports
``dwt_keras.transforms`` (PyWavelets' ``dwt/idwt/wavedec/waverec/dwt2/idwt2/wavedec2/
waverec2`` in TensorFlow, with PyWavelets' signatures). See that package's docstring.

Example:

>>> from dwt_keras.wavelets import wavedec2, waverec2
>>> import numpy as np
>>> x = np.random.rand(2, 32, 32).astype("float32")
>>> float(abs(waverec2(wavedec2(x, "db2", "periodization", 2), "db2") - x).numpy().max()) < 1e-5
True
"""

from dwt_keras.transforms import *  # noqa: F401,F403
from dwt_keras.transforms import __all__  # noqa: F401
