"""Export of the final (decompressed) model: `--export tflite|savedmodel`.

`export_model` writes the format, then measures what it wrote: its size in bytes, its median
inference latency (the exported artefact itself, run by the TensorFlow runtime or the TFLite
interpreter, on a fixed batch after warm-up) and the largest absolute difference between its
outputs and the Keras model's on that batch, so a broken export cannot go unnoticed.

TFLite holds the dense reconstructed weights (float32): coefficient-domain compression saves
storage only in `save_compressed` files, not in an exported graph.
"""

import os
import pathlib
import shutil
import tempfile
import time

import numpy as np

EXPORT_FORMATS = ("none", "tflite", "savedmodel")


def _dir_bytes(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def _median_ms(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def _export_savedmodel(model, path):
    path = pathlib.Path(path)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.export(str(tmp / "m"), format="tf_saved_model", verbose=False)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp / "m", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _tflite_interpreter(path):
    try:  # the maintained runtime, when installed
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            # tf.lite.Interpreter warns that it moves to ai_edge_litert; it still works here.
            warnings.simplefilter("ignore", UserWarning)
            return tf.lite.Interpreter(model_path=path)
    return Interpreter(model_path=path)


def export_model(model, fmt, out_dir, sample_x, batch_size=32, repeats=20):
    """Exports `model` and measures the export.

    Args:
        model: the final Keras model (decompressed weights).
        fmt: `"tflite"` or `"savedmodel"` (`"none"` returns `None`).
        out_dir: the run folder; writes `savedmodel/` or `model.tflite` there.
        sample_x: inputs for the latency and output checks (the first `batch_size` are used).
        batch_size: the latency batch size.
        repeats: timed runs (median reported).

    Returns:
        `{"format", "path", "bytes", "batch_size", "latency_ms_per_batch",
        "latency_ms_per_sample", "max_abs_diff_vs_keras"}` or `None`.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}. Valid choices: {', '.join(EXPORT_FORMATS)}.")
    if fmt in (None, "none"):
        return None
    import tensorflow as tf

    from dwt_keras.utils.io import atomic_write_bytes

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    batch = np.asarray(sample_x[:batch_size], dtype=np.float32)
    reference = np.asarray(model(batch, training=False))
    if fmt == "savedmodel":
        path = _export_savedmodel(model, out_dir / "savedmodel")
        loaded = tf.saved_model.load(str(path))  # keep a reference: it owns the variables
        serve = loaded.serve
        tensor = tf.constant(batch)
        out = np.asarray(serve(tensor))
        latency = _median_ms(lambda: serve(tensor).numpy(), repeats)
        size = _dir_bytes(path)
    else:
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            saved = _export_savedmodel(model, pathlib.Path(tmp) / "sm")
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            flat = converter.convert()
        path = atomic_write_bytes(out_dir / "model.tflite", flat)
        interpreter = _tflite_interpreter(str(path))
        inp = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inp["index"], batch.shape)
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        out_index = interpreter.get_output_details()[0]["index"]

        def run():
            interpreter.set_tensor(inp["index"], batch)
            interpreter.invoke()
            return interpreter.get_tensor(out_index)

        out = np.asarray(run())
        latency = _median_ms(run, repeats)
        size = os.path.getsize(path)
    return {
        "format": fmt,
        "path": str(path),
        "bytes": int(size),
        "batch_size": int(len(batch)),
        "repeats": int(repeats),
        "latency_ms_per_batch": latency,
        "latency_ms_per_sample": latency / len(batch),
        "max_abs_diff_vs_keras": float(np.max(np.abs(out - reference))),
    }
