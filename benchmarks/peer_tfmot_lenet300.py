"""TF Model Optimization Toolkit magnitude pruning of a trained LeNet-300-100 (tf-keras venv).

Called by ``bench_deployment.py`` with the dense model's weights, the MNIST splits and our
per-layer sparsity: prunes each Dense layer to that sparsity (PolynomialDecay over the first
half of the fine-tuning, then held), fine-tunes, strips, converts to LiteRT with dynamic-range
quantisation, and prints one JSON line: test accuracy (tf.lite interpreter), .tflite bytes,
zipped bytes, and the fine-tuning epoch time over a plain epoch of the same model (same run).
"""

import argparse
import json
import os
import tempfile
import time
import zipfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras as keras  # noqa: E402


def _model(weights):
    m = keras.Sequential([keras.layers.Flatten(input_shape=(28, 28, 1), name="flatten"),
                          keras.layers.Dense(300, activation="relu", name="fc1"),
                          keras.layers.Dense(100, activation="relu", name="fc2"),
                          keras.layers.Dense(10, name="logits")])
    m.set_weights(weights)
    return m


def _compile(m):
    m.compile(keras.optimizers.Adam(1e-3),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return m


def _zipped(path):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "f.zip")
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.write(path, arcname=os.path.basename(path))
        return os.path.getsize(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--sparsity", required=True, help="JSON {layer: sparsity}")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--out_dir", required=True)
    a = p.parse_args()
    w = np.load(a.weights)
    weights = [w[f"arr_{i}"] for i in range(len(w.files))]
    d = np.load(a.data)
    x_train = d["x_train"].astype(np.float32) / 255.0
    x_test = d["x_test"].astype(np.float32) / 255.0
    y_train, y_test = d["y_train"], d["y_test"]
    sparsity = json.loads(a.sparsity)
    steps = int(np.ceil(len(x_train) / a.batch_size))
    end = max(1, a.epochs // 2) * steps

    def prune(layer):
        if layer.name in sparsity:
            schedule = tfmot.sparsity.keras.PolynomialDecay(
                initial_sparsity=0.0, final_sparsity=float(sparsity[layer.name]), begin_step=0,
                end_step=end, frequency=100)
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    plain = _compile(_model(weights))
    dense_acc = float(plain.evaluate(x_test, y_test, verbose=0)[1])
    pruned = _compile(keras.models.clone_model(_model(weights), clone_function=prune))
    # start from the trained weights (clone_model re-initialises the layers it copies)
    for layer in pruned.layers:
        src = plain.get_layer(layer.name.replace("prune_low_magnitude_", ""))
        target = getattr(layer, "layer", layer)
        if src.weights:
            target.set_weights(src.get_weights())
    epoch_s = []
    for _ in range(a.epochs):
        t0 = time.perf_counter()
        pruned.fit(x_train, y_train, epochs=1, batch_size=a.batch_size, verbose=0,
                   callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
        epoch_s.append(time.perf_counter() - t0)
    plain_s = []
    for _ in range(2):
        t0 = time.perf_counter()
        _compile(_model(weights)).fit(x_train, y_train, epochs=1, batch_size=a.batch_size,
                                      verbose=0)
        plain_s.append(time.perf_counter() - t0)
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    data = converter.convert()
    path = os.path.join(a.out_dir, "tfmot_pruned_dynamic_int8.tflite")
    with open(path, "wb") as f:
        f.write(data)
    interp = tf.lite.Interpreter(model_path=path)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [len(x_test), 28, 28, 1])
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x_test)
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    zeros = {l.name: float(np.mean(l.get_weights()[0] == 0)) for l in stripped.layers if l.weights}
    print(json.dumps({
        "tensorflow": tf.__version__, "tfmot": tfmot.__version__,
        "dense_test_accuracy": dense_acc,
        "test_accuracy": float(np.mean(np.argmax(out, -1) == y_test)),
        "bytes": len(data), "bytes_zipped": _zipped(path), "weight_zero_fraction": zeros,
        "epoch_s_pruned": epoch_s, "epoch_s_plain": plain_s,
        "epoch_ratio_last_pruned_to_plain": epoch_s[-1] / float(np.median(plain_s)),
    }))


if __name__ == "__main__":
    main()
