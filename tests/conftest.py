"""Test setup: offline data from ../shared/data when present, quiet TensorFlow, seeds."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")
# Never try the network from tests: the download path is tested with mocks.
os.environ.setdefault("DWT_KERAS_OFFLINE", "1")

_SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "DWT_KERAS_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["DWT_KERAS_DATA_DIR"] = str(_SHARED)

import gc  # noqa: E402

import keras  # noqa: E402,F401
import pytest  # noqa: E402
import pywt  # noqa: E402,F401
import tensorflow  # noqa: E402,F401

# The heavy libraries' objects live for the whole session: exempting them from the cyclic
# garbage collector's scans roughly halves the time of the many small oracle tests.
gc.freeze()


def shared_data_dir():
    """The folder of real datasets, or None when this checkout has no ../shared/data."""
    path = os.environ.get("DWT_KERAS_DATA_DIR")
    return pathlib.Path(path) if path and pathlib.Path(path).is_dir() else None


@pytest.fixture(autouse=True)
def _seed_everything():
    import keras

    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


@pytest.fixture
def data_dir():
    path = shared_data_dir()
    if path is None:
        pytest.skip("needs ../shared/data (the real datasets); not present in this checkout")
    return path
