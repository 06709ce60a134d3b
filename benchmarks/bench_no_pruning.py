"""Issue 15's rows without pruning, on a trained dense model: Keras 3 `model.quantize()` and this
project's k-means values alone, beside the dense float32 model (same test split, same run).

Reads a compression run folder (its `dense_model.keras` and `report.json`, which names the
dataset, seed and validation split), then for the dense model:

* Keras 3 ``model.quantize("int8")`` and ``"int4"``: the ``.keras`` file's bytes and test
  accuracy, and which layers Keras quantised (the rest stay float32);
* `save_compressed` with every weight kept (no compression state: the identity basis, each
  large kernel's weights as they are) and k-means values at 4, 5, 6 and 8 bits, reloaded,
  BatchNorm statistics re-estimated on augmented training batches (as the compression runs
  do), scored;
* BatchNorm recalibration of the dense model itself on clean training images and on the
  training pipeline's augmented batches: which data the statistics must come from.

    python benchmarks/bench_no_pruning.py --run_dir /tmp/r20/<run> --data_dir ../shared/data \
        --name no_pruning_resnet20_s0

Accuracy and bytes only (no timing). The result goes to `benchmarks/results/<name>.json`.
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _record import Recorder  # noqa: E402

KMEANS_BITS = (4, 5, 6, 8)


def _quantized_layers(model):
    """Names of the layers Keras quantised (those with a `quantization_mode` set)."""
    from dwt_keras.compression import bases

    return [l.name for l in bases._flatten_layers(model)
            if getattr(l, "quantization_mode", None)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--run_dir", required=True)
    p.add_argument("--data_dir", default=None)
    p.add_argument("--name", default="no_pruning")
    p.add_argument("--recalibration_batches", type=int, default=50)
    a = p.parse_args()

    import keras

    from dwt_keras.compression import load_compressed, save_compressed, sizes
    from dwt_keras.compression.deployment import _test_accuracy as _accuracy
    from dwt_keras.data import load_arrays
    from dwt_keras.experiments.run import pipelines
    from dwt_keras.training.batchnorm import recalibrate_batchnorm

    rec = Recorder(a.name)
    report = json.load(open(os.path.join(a.run_dir, "report.json")))
    config = report["config"]
    dataset = report["dataset"]
    dataset = dataset["name"] if isinstance(dataset, dict) else dataset
    s = load_arrays(dataset, a.data_dir,
                    validation_split=config.get("validation_split", 0.1),
                    seed=config.get("seed", 0))
    dense_path = os.path.join(a.run_dir, "dense_model.keras")
    dense = keras.models.load_model(dense_path)
    float32 = sizes.dense_float32_bytes(dense)
    result = {"run_dir": a.run_dir, "dataset": dataset, "model": report["model"],
              "seed": config.get("seed"), "bytes_float32": float32,
              "dense": {"test_accuracy": _accuracy(dense, s.x_test, s.y_test),
                        "report_test_accuracy": report["dense"]["test_accuracy"]}}

    has_bn = any(isinstance(l, keras.layers.BatchNormalization) for l in dense.layers)
    # the training pipeline as the run's fit() saw it (its augmentation, batch size and seed)
    train, _, _ = pipelines(s, config.get("batch_size") or 64, config.get("augment") or "none",
                            config.get("seed") or 0)
    if has_bn:
        recal = {"augment": config.get("augment")}
        for name, data in (("clean_training_images", s.x_train), ("augmented_batches", train)):
            m = keras.models.load_model(dense_path)
            recalibrate_batchnorm(m, data, batches=a.recalibration_batches)
            recal[name] = _accuracy(m, s.x_test, s.y_test)
        result["dense"]["recalibrated_test_accuracy"] = recal
        print("dense recalibrated:", recal, flush=True)

    quantized = {}
    for mode in ("int8", "int4"):
        q = keras.models.load_model(dense_path)
        q.quantize(mode)
        keras_bytes, keras_zip = sizes.keras_file_bytes(q)
        names = _quantized_layers(q)
        quantized[mode] = {"test_accuracy": _accuracy(q, s.x_test, s.y_test),
                           "bytes_keras": keras_bytes, "bytes_keras_zip": keras_zip,
                           "ratio": float32 / keras_bytes, "quantized_layers": names,
                           "n_quantized_layers": len(names),
                           "n_weighted_layers": sum(1 for l in q.layers if l.weights)}
    result["keras_quantize"] = quantized

    kmeans = {}
    with tempfile.TemporaryDirectory() as tmp:
        for bits in KMEANS_BITS:
            path = os.path.join(tmp, f"kmeans{bits}.dwtc")
            save_compressed(keras.models.load_model(dense_path), path, quantize="kmeans",
                            bits=bits)
            nbytes = os.path.getsize(path)
            loaded = load_compressed(path)
            row = {"bytes_compressed_file": nbytes, "ratio": float32 / nbytes,
                   "test_accuracy": _accuracy(loaded, s.x_test, s.y_test)}
            if has_bn:
                recalibrate_batchnorm(loaded, train, batches=a.recalibration_batches)
                row["test_accuracy_recalibrated"] = _accuracy(loaded, s.x_test, s.y_test)
            kmeans[str(bits)] = row
            print(f"k-means {bits} bits: {nbytes:,} B ({row['ratio']:.1f}x), "
                  f"{100 * row['test_accuracy']:.2f} %", flush=True)
    result["kmeans_only"] = kmeans
    print(rec.write(result, seeds=[config.get("seed", 0)]))


if __name__ == "__main__":
    main()
