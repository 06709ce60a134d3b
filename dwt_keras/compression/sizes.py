"""Model sizes in bytes, measured on what is actually stored.

* ``bytes_float32``: every weight (trainable or not) as float32: ``4 * count``. The reference
  of the compression ratio (Han et al. count LeNet-300-100's 267K parameters as 1070 KB).
* ``bytes_keras``: the ``.keras`` file (a zip archive written *without* compression), saved
  without optimizer state.
* ``bytes_keras_zip``: that file DEFLATE-zipped, which is what the TF Model Optimization Toolkit
  reports as the "compressed size" of a pruned model.
* ``bytes_compressed_file``: the file written by `save_compressed`.

``compression_ratio = bytes_float32 / bytes_compressed_file``.
"""

import json
import pathlib
import tempfile
import zipfile


def dense_float32_bytes(model):
    """4 bytes per weight of `model` (all weights, trainable and not)."""
    return 4 * int(sum(int(w.numpy().size) for w in model.weights))


def zipped_bytes(path):
    """Size of `path` after DEFLATE zipping (level 9), in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "f.zip"
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.write(path, arcname=pathlib.Path(path).name)
        return out.stat().st_size


def keras_file_bytes(model, path=None):
    """Saves `model` as ``.keras`` (to `path`, or a temporary file) and returns
    ``(bytes_keras, bytes_keras_zip)``."""
    if path is not None:
        path = pathlib.Path(path)
        if not path.exists():
            save_keras_atomic(model, path)
        return path.stat().st_size, zipped_bytes(path)
    with tempfile.TemporaryDirectory() as tmp:
        p = pathlib.Path(tmp) / "model.keras"
        _inference_copy(model).save(p)
        return p.stat().st_size, zipped_bytes(p)


def _inference_copy(model):
    """An uncompiled copy with the same weights: the ``.keras`` file then holds the model and its
    weights only (a compiled model's file also carries the optimizer's slots, e.g. 3x for Adam)."""
    import keras

    if getattr(model, "optimizer", None) is None:
        return model
    # From the architecture only: clone_model and to_json also carry the compile state.
    config = json.loads(model.to_json())
    config.pop("compile_config", None)
    clone = keras.models.model_from_json(json.dumps(config))
    clone.set_weights(model.get_weights())
    return clone


def save_keras_atomic(model, path):
    """Saves `model` (without optimizer state) as ``.keras`` through a temporary file and a rename."""
    from dwt_keras.utils.io import atomic_path

    model = _inference_copy(model)
    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def size_report(model, keras_path=None, compressed_path=None):
    """All sizes of one model, in bytes (keys as in report.json)."""
    out = {"bytes_float32": dense_float32_bytes(model)}
    out["bytes_keras"], out["bytes_keras_zip"] = keras_file_bytes(model, keras_path)
    if compressed_path is not None:
        out["bytes_compressed_file"] = pathlib.Path(compressed_path).stat().st_size
        out["compression_ratio"] = out["bytes_float32"] / out["bytes_compressed_file"]
    return out
