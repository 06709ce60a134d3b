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


def _class_images(rng, n, templates):
    """Images whose class is learnable: a fixed random template per class, plus noise."""
    num_classes, shape = len(templates), templates.shape[1:]
    y = rng.integers(0, num_classes, size=n)
    x = 0.6 * templates[y] + 0.4 * rng.uniform(0, 255, size=(n, *shape))
    return x.clip(0, 255).astype("uint8"), y.astype("uint8")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """A folder of small generated data sets in the real files' layout (`<name>.npz` with
    x_train, y_train, x_test, y_test, uint8): `mnist` (28x28, 10 classes, 1200 / 300) and
    `cifar10_subset` (32x32x3, 10 classes, 600 / 200). For the tests of the engine and the apps
    that need data but not real data, so that they never skip."""
    import numpy as np

    folder = tmp_path_factory.mktemp("tiny_data")
    rng = np.random.default_rng(0)
    for name, shape, n_train, n_test in (("mnist", (28, 28), 1200, 300),
                                         ("cifar10_subset", (32, 32, 3), 600, 200)):
        templates = rng.uniform(0, 255, size=(10, *shape))
        x_train, y_train = _class_images(rng, n_train, templates)
        x_test, y_test = _class_images(rng, n_test, templates)
        np.savez(folder / f"{name}.npz", x_train=x_train, y_train=y_train, x_test=x_test,
                 y_test=y_test)
    return folder


@pytest.fixture
def tiny_data_env(tiny_data_dir, monkeypatch):
    """`tiny_data_dir` as `$DWT_KERAS_DATA_DIR` for this test and the apps it starts (which
    read the data folder from the environment when no `--data_dir` is given)."""
    monkeypatch.setenv("DWT_KERAS_DATA_DIR", str(tiny_data_dir))
    return tiny_data_dir
