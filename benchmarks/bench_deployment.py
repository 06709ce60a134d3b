"""Deployment of a compressed LeNet-300-100: the coefficient form against what users get elsewhere.

Same run, same test split (official MNIST test set), one trained dense model and its compressed
file (see ``benchmarks/train_lenet300_compressed.py``):

* the app's ``deployment`` block (`deployment.deployment_report`): the dense model,
  ``load_compressed(path)`` (dense form) and ``load_compressed(path, form="coefficient")``, test
  accuracy and `deployment_profile` (weight bytes held, multiply-adds per sample, latency at
  batch 1 and 256), the LiteRT files of the coefficient form and the dense model; the same
  Keras forms under XLA, and the coefficient form with the ``gather`` product (the fewest
  multiply-adds);
* LiteRT files -- the coefficient form (int8 values with per-unit scales, and float32), the
  dense float32 file and the converter's dynamic-range int8: bytes, DEFLATE-zipped bytes, test
  accuracy and agreement with the Keras model they come from, batch-1 latency (interleaved;
  XNNPACK default delegate and built-in kernels), with ``tf.lite.Interpreter`` in this process
  and with ``ai_edge_litert`` from its own venv (``--litert_python``);
* Keras 3 ``model.quantize("int8")`` / ``"int4"`` of the dense model: ``.keras`` bytes, accuracy;
* TF Model Optimization Toolkit magnitude pruning (tf-keras, its own venv, ``--tfmot_python``)
  to our per-layer budget, fine-tuned, stripped, dynamic-range LiteRT: bytes, zipped bytes,
  accuracy, fine-tuning epoch time over a plain epoch.

Result: ``benchmarks/results/deployment_lenet300.json`` (through ``_record.Recorder``).

    python benchmarks/bench_deployment.py --run_dir /tmp/issue13/haar32 \\
        --litert_python /work/peers/litert/bin/python --tfmot_python /work/peers/tfmot/bin/python
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _peer(python, script, args):
    """Runs `script` with another venv's `python` (this checkout on its path); returns its JSON."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([python, os.path.join(ROOT, "benchmarks", script)] + args, env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run_dir", required=True,
                   help="folder with dense_model.keras and compressed_model.dwtc")
    p.add_argument("--data_dir", default=os.environ.get("DWT_KERAS_DATA_DIR", "/work/shared/data"))
    p.add_argument("--repeats", type=int, default=30, help="Keras latency repeats")
    p.add_argument("--litert_repeats", type=int, default=2000)
    p.add_argument("--litert_python", default=None)
    p.add_argument("--tfmot_python", default=None)
    p.add_argument("--tfmot_epochs", type=int, default=2)
    p.add_argument("--name", default="deployment_lenet300")
    a = p.parse_args()

    from _record import Recorder

    rec = Recorder(a.name)
    import keras
    import numpy as np

    from dwt_keras.compression import (deployment, get_state, litert, load_compressed, sizes)
    from dwt_keras.compression import coefficient_domain as cd
    from dwt_keras.data import load_arrays

    s = load_arrays("mnist", data_dir=a.data_dir)
    x, y = s.x_test, s.y_test
    dwtc = os.path.join(a.run_dir, "compressed_model.dwtc")
    dense = keras.models.load_model(os.path.join(a.run_dir, "dense_model.keras"))
    out_dir = os.path.join(a.run_dir, "litert")
    # what the app's report gets (the `deployment` block), then the wider comparison
    result = {"run_dir": a.run_dir, "compressed_file_bytes": os.path.getsize(dwtc),
              "deployment": deployment.deployment_report(
                  dwtc, x, y, dense_model=dense, litert_dir=out_dir, repeats=a.repeats,
                  litert_repeats=a.litert_repeats)}

    dense_form = load_compressed(dwtc)
    serving = {"dense": dense, "coefficient": load_compressed(dwtc, form="coefficient"),
               "coefficient_gather": cd.to_coefficient_domain(dense_form, product="gather")}
    result["keras_xla"] = deployment.deployment_profile(serving, x, batch_sizes=(1, 256),
                                                        repeats=a.repeats, jit_compile=True)
    result["keras_gather"] = deployment.deployment_profile(
        {"coefficient_gather": serving["coefficient_gather"]}, x, batch_sizes=(1, 256),
        repeats=a.repeats)
    reference = {name: m.predict(x, batch_size=500, verbose=0) for name, m in serving.items()}

    files = {
        "coefficient_int8": litert.export_litert(serving["coefficient"], os.path.join(out_dir, "coefficient_int8.tflite"), "int8"),
        "coefficient_float32": litert.export_litert(serving["coefficient"], os.path.join(out_dir, "coefficient_float32.tflite"), "none"),
        "dense_float32": litert.export_dense_litert(dense, os.path.join(out_dir, "dense_float32.tflite")),
        "dense_dynamic_int8": litert.export_dense_litert(dense, os.path.join(out_dir, "dense_dynamic_int8.tflite"), "dynamic_int8"),
    }
    ref_of = {"coefficient_int8": "coefficient", "coefficient_float32": "coefficient",
              "dense_float32": "dense", "dense_dynamic_int8": "dense"}
    paths = {k: v["path"] for k, v in files.items()}
    lite = {}
    for name, info in files.items():
        ev = litert.evaluate_litert(info["path"], x, y, reference=reference[ref_of[name]])
        lite[name] = {"bytes": info["bytes"], "bytes_zipped": sizes.zipped_bytes(info["path"]),
                      "test_accuracy_tf_lite": ev["accuracy"], "max_abs_diff_vs_keras": ev["max_abs_diff"],
                      "top1_agreement_vs_keras": ev["top1_agreement"]}
        if "max_abs_value_error" in info:
            lite[name]["max_abs_value_error"] = info["max_abs_value_error"]
    lite["coefficient_int8"]["constants"] = litert.constant_tensors(paths["coefficient_int8"])[:12]
    for delegates in (True, False):
        key = "latency_ms_batch1_tf_lite_" + ("xnnpack" if delegates else "builtin")
        for name, ms in litert.litert_latency_ms(paths, x, 1, repeats=a.litert_repeats,
                                                 default_delegates=delegates).items():
            lite[name][key] = ms
    if a.litert_python:
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "test.npz")
            np.savez(data, x=x, y=y)
            peer = _peer(a.litert_python, "peer_litert_run.py",
                         ["--files", json.dumps(paths), "--data", data,
                          "--repeats", str(a.litert_repeats)])
        result["ai_edge_litert"] = {k: v for k, v in peer.items() if k != "files"}
        for name, r in (peer.get("files") or {}).items():
            lite[name].update({k + "_ai_edge_litert": v for k, v in r.items()})
    result["litert"] = lite

    quantized = {}
    for mode in ("int8", "int4"):
        q = keras.models.load_model(os.path.join(a.run_dir, "dense_model.keras"))
        q.quantize(mode)
        keras_bytes, keras_zip = sizes.keras_file_bytes(q)
        quantized[mode] = {"test_accuracy": deployment._test_accuracy(q, x, y),
                           "bytes_keras": keras_bytes,
                           "bytes_keras_zip": keras_zip}
    result["keras_quantize"] = quantized

    if a.tfmot_python:
        state = get_state(dense_form)
        sparsity = {n: 1.0 - float(m.sum()) / m.size for n, m in state.mask_arrays().items()}
        with tempfile.TemporaryDirectory() as tmp:
            weights = os.path.join(tmp, "weights.npz")
            np.savez(weights, *dense.get_weights())
            data = os.path.join(tmp, "mnist.npz")
            np.savez(data, x_train=(s.x_train * 255).astype(np.uint8), y_train=s.y_train,
                     x_test=(x * 255).astype(np.uint8), y_test=y)
            result["tfmot"] = _peer(a.tfmot_python, "peer_tfmot_lenet300.py",
                                    ["--weights", weights, "--data", data,
                                     "--sparsity", json.dumps(sparsity),
                                     "--epochs", str(a.tfmot_epochs), "--out_dir", out_dir])
    print(rec.write(result, seeds=[0]))


if __name__ == "__main__":
    main()
