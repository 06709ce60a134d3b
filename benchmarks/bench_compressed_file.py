"""Where the bytes of the compressed file go, before (format 1) and after (format 3), and
NNCodec (the MPEG-7 NNR reference, DeepCABAC) coding the same kept coefficients.

    python benchmarks/bench_compressed_file.py --data_dir /work/shared/data \\
        [--nncodec_python /work/peers/nncodec/bin/python] [--old_checkout /tmp/dwt-keras-9c7fdd3]

Trains LeNet-300-100 (3 dense epochs) and LeNet-5 (2) on MNIST (55,000 train / 5,000
validation from the training split; the official test split for the accuracies), prunes each
with GradualCompression(basis="haar") to 3 % then 1.5 % kept (one epoch each, the ramp over
its first half), and at each stage measures the file three ways, on the same kept
coefficients:

* ``format1_old_writer`` (with ``--old_checkout``, a checkout of 9c7fdd3): the file that code
  writes (6-bit k-means, lzma), from a format 1 file of the exact values;
* ``format1``: the same codes re-created with `coding`'s format 1 options (positions as the
  smaller of bitmask / delta varints, the 6-bit labels one byte each, all under .xz lzma,
  float32 codebooks in the JSON header, float32 biases, the full ``to_json()``; its codebook
  is sorted), a valid format 1 file loaded back for its accuracy;
* ``format3``: ``save_compressed`` defaults (6-bit k-means, float16 biases, lzma);
* ``format3_chosen_bits``: the same with ``bitwidth.choose_bits(tolerance=0.001)`` on the
  validation split;

``format3_bits_sweep``: format 3 with one k-means width for every layer, for a rate-accuracy
curve; and, with ``--nncodec_python``, NNCodec at several QPs on the kept-coefficient tensors
(zeros elsewhere; biases, architecture and header as in ``format3``), compared on
``kept_coefficient_bytes`` (positions + codebooks + values; NNCodec codes the zeros itself). Byte splits come from
`storage.byte_breakdown` (each part compressed alone with the file's codec). One seed: the
byte split does not depend on it the way accuracy differences do; accuracies here are of these
short runs, not the app's.
"""

import argparse
import io
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _record import Recorder  # noqa: E402


_OLD_WRITER = """
import sys
from dwt_keras.compression import load_compressed, storage
m = load_compressed(sys.argv[1])
data, _ = storage.serialize_compressed(m, quantize="kmeans", bits=6, codec="lzma", snap=False)
open(sys.argv[2], "wb").write(data)
"""


def old_writer_file(model, checkout, tmp):
    """The file the dwt-keras at `checkout` (e.g. a worktree of 9c7fdd3) writes for `model`
    (6-bit k-means, lzma): our format 1 file of the exact values, re-encoded by the old code."""
    src, dst = pathlib.Path(tmp) / "exact_v1.dwtc", pathlib.Path(tmp) / "old.dwtc"
    src.write_bytes(format1_file(model, bits=None))
    subprocess.run([sys.executable, "-c", _OLD_WRITER, str(src), str(dst)], check=True,
                   env={**os.environ, "PYTHONPATH": checkout}, cwd=checkout,
                   capture_output=True, timeout=600)
    return dst.read_bytes()


def format1_file(model, bits=6):
    """Format 1's codes for `model` (6-bit k-means, lzma; ``bits=None``: exact values)."""
    import keras

    from dwt_keras.compression import architecture, coding, get_state, storage

    state = get_state(model)
    masks, coeffs = state.mask_arrays(), state.coefficients()
    names = {id(state.layers[n].kernel): n for n in state.plans}
    blobs, entries = io.BytesIO(), []

    def put(b):
        off = blobs.tell()
        blobs.write(b)
        return {"offset": off, "nbytes": len(b)}

    def after_xz(b):
        return len(storage._encode(b, "lzma", 1))

    for w in model.weights:
        value = np.asarray(w.numpy())
        entry = {"path": w.path, "shape": list(value.shape), "dtype": str(value.dtype)}
        n = names.get(id(w))
        if n is None:
            entry.update(kind="dense", encoding=value.dtype.name, blob=put(value.tobytes()))
        else:
            mask = masks[n]
            pos_enc, pos = coding.encode_positions(mask, after_xz)
            meta, vals, _ = coding.quantize_values(np.asarray(coeffs[n], np.float32)[mask],
                                                   "kmeans" if bits else "none", bits,
                                                   entropy_coded=False)
            entry.update(kind="compressed", plan=state.plans[n].to_dict(), n_kept=int(mask.sum()),
                         positions={"encoding": pos_enc, "blob": put(pos)},
                         values={**meta, "blob": put(vals)})
        entries.append(entry)
    header = {"format": "dwt-keras-compressed", "version": 1, "keras_version": keras.__version__,
              "model_config": architecture.full_config(model),
              "quantize": "kmeans" if bits else "none", "bits": bits, "small_weights": "float32", "scope": state.scope,
              "keep_approximation": state.keep_approximation, "max_abs_weight_error": 0.0,
              "weights": entries}
    return storage.pack_container(header, blobs.getvalue(), "lzma", version=1)


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, batch_size=1000, verbose=0).argmax(-1) == y))


def measure(data, x, y, tmp):
    from dwt_keras.compression import load_compressed, storage

    path = pathlib.Path(tmp) / "m.dwtc"
    path.write_bytes(data)
    model = load_compressed(path)
    bd = storage.byte_breakdown(data)
    coded = {k: v["coded"] for k, v in bd["parts"].items()}
    kept = coded["positions"] + coded["codebooks"] + coded["values"]
    return model, {"bytes": len(data), "test_accuracy": accuracy(model, x, y),
                   "kept_coefficient_bytes": kept, "parts": bd["parts"]}


def nncodec_rows(model, reference, nncodec_python, qps, x, y, tmp):
    """NNCodec on the kept-coefficient tensors of `model`; biases etc. as in `reference`."""
    from dwt_keras.compression import get_state

    state = get_state(model)
    masks, coeffs = state.mask_arrays(), state.coefficients()
    tensors = {}
    for n, plan in state.plans.items():
        c = np.where(masks[n], np.asarray(coeffs[n], np.float32), 0.0)
        tensors[f"{n}.weight"] = c.reshape(-1, plan.kernel_shape[-1])
    src, dst = pathlib.Path(tmp) / "in.npz", pathlib.Path(tmp) / "out.npz"
    np.savez(src, **tensors)
    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_nncodec_peer.py")
    subprocess.run([nncodec_python, peer, str(src), str(dst), ",".join(map(str, qps))],
                   check=True, capture_output=True, text=True, timeout=1800)
    out, rows = np.load(dst), []
    target = get_state(reference)
    for qp in qps:
        for n in state.plans:
            c = out[f"qp{qp}/{n}.weight"].reshape(-1)
            target.layers[n].kernel.assign(np.asarray(state.transforms[n].inverse(c)))
        kept = {n: int(np.count_nonzero(out[f"qp{qp}/{n}.weight"])) for n in state.plans}
        rows.append({"qp": qp, "kept_coefficient_bytes": int(out[f"bytes_qp{qp}"]),
                     "test_accuracy": accuracy(reference, x, y),
                     "nonzero_after_quantisation": kept,
                     "encode_decode_seconds": [float(s) for s in out[f"seconds_qp{qp}"]]})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default=os.environ.get("DWT_KERAS_DATA_DIR", "/work/shared/data"))
    p.add_argument("--nncodec_python", default=None,
                   help="python of a venv with nncodec (e.g. /work/peers/nncodec/bin/python)")
    p.add_argument("--qps", default="-40,-32,-28,-24,-20,-16,-12")
    p.add_argument("--bits_sweep", default="1,2,3,4,5,6",
                   help="format 3 with these uniform k-means widths (rate-accuracy beside NNCodec)")
    p.add_argument("--old_checkout", default=None,
                   help="a checkout of dwt-keras 9c7fdd3: format1 is then that code's own file")
    p.add_argument("--keeps", default="0.03,0.015")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="compressed_file")
    args = p.parse_args()
    rec = Recorder(args.name)

    import keras

    from dwt_keras.compression import GradualCompression, storage
    from dwt_keras.compression.bitwidth import choose_bits
    from dwt_keras.experiments.registry import build_model

    d = np.load(os.path.join(args.data_dir, "mnist.npz"))
    x = (d["x_train"].astype("float32") / 255.0)[..., None]
    y = d["y_train"]
    xv, yv, x, y = x[-5000:], y[-5000:], x[:-5000], y[:-5000]
    xt, yt = (d["x_test"].astype("float32") / 255.0)[..., None], d["y_test"]
    qps = [int(q) for q in args.qps.split(",")]
    results = []
    for name, dense_epochs, batch in (("lenet300", 3, 32), ("lenet5", 2, 64)):
        keras.utils.set_random_seed(args.seed)
        model = build_model(name, (28, 28, 1), 10)
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=dense_epochs, batch_size=batch, verbose=0)
        dense_acc = accuracy(model, xt, yt)
        steps, prev = int(np.ceil(len(x) / batch)), 1.0
        for keep in (float(k) for k in args.keeps.split(",")):
            start = int(model.optimizer.iterations.numpy())
            cb = GradualCompression(final_keep=keep, initial_keep=prev, begin_step=start,
                                    end_step=start + steps // 2, frequency=max(1, steps // 20),
                                    basis="haar", verbose=0)
            model.fit(x, y, epochs=1, batch_size=batch, callbacks=[cb], verbose=0)
            prev = keep
            row = {"model": name, "keep": keep, "dense_test_accuracy": dense_acc,
                   "bytes_float32": 4 * model.count_params()}
            with tempfile.TemporaryDirectory() as tmp:
                exact, _ = storage.serialize_compressed(model, quantize=None)  # snaps
                row["exact_float32_values"] = measure(exact, xt, yt, tmp)[1]
                t = time.perf_counter()
                row["format1"] = measure(format1_file(model), xt, yt, tmp)[1]
                if args.old_checkout:
                    row["format1_old_writer"] = measure(
                        old_writer_file(model, args.old_checkout, tmp), xt, yt, tmp)[1]
                data, _ = storage.serialize_compressed(model, snap=False)
                reference, row["format3"] = measure(data, xt, yt, tmp)
                row["format3"]["serialize_seconds"] = time.perf_counter() - t
                choice = choose_bits(model, xv, yv, tolerance=0.001)
                data, _ = storage.serialize_compressed(model, bits=choice["bits"], snap=False)
                row["format3_chosen_bits"] = measure(data, xt, yt, tmp)[1]
                row["format3_chosen_bits"].update(bits=choice["bits"],
                                                  validation_reference=choice["reference"],
                                                  validation_accuracy=choice["metric"])
                row["format3_bits_sweep"] = []
                for b in (int(v) for v in args.bits_sweep.split(",") if v):
                    data, _ = storage.serialize_compressed(model, bits=b, snap=False)
                    m = measure(data, xt, yt, tmp)[1]
                    row["format3_bits_sweep"].append({"bits": b, **{k: m[k] for k in (
                        "bytes", "test_accuracy", "kept_coefficient_bytes")}})
                if args.nncodec_python:
                    row["nncodec"] = nncodec_rows(model, reference, args.nncodec_python, qps,
                                                  xt, yt, tmp)
            for k in ("format1", "format1_old_writer", "format3", "format3_chosen_bits"):
                if k in row:
                    row[k]["compression_ratio"] = row["bytes_float32"] / row[k]["bytes"]
            print(json.dumps({k: (v["bytes"], round(v["test_accuracy"], 4)) for k, v in row.items()
                              if isinstance(v, dict) and "bytes" in v}), flush=True)
            results.append(row)
    rec.write({"rows": results, "nncodec_python": args.nncodec_python, "qps": qps,
               "old_checkout_commit": args.old_checkout and subprocess.run(
                   ["git", "-C", args.old_checkout, "rev-parse", "HEAD"], capture_output=True,
                   text=True).stdout.strip()},
              seeds=[args.seed])


if __name__ == "__main__":
    main()
