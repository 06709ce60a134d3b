"""Trains a LeNet-300-100 on MNIST and compresses it, for the deployment benchmarks.

Dense training (Adam, best validation epoch kept), then gradual compression to `--keep` of the
coefficients in `--wavelet` over the first half of the retraining epochs with the masks held by
projection; the other half retrains the dense model the same way (``--retrain_in dense``) or the
coefficient form (``--retrain_in coefficient``: `retrain_coefficient_domain` after the final
mask); then `save_compressed` (float32 values, exact). Writes, into `--out`: ``dense_model.keras``, ``compressed_model.dwtc``
and ``train_info.json`` (test accuracies of both, the plan, the kept counts).

    python benchmarks/train_lenet300_compressed.py --out /tmp/issue13 --wavelet haar --keep 0.03
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--data_dir", default="/work/shared/data")
    p.add_argument("--wavelet", default="haar")
    p.add_argument("--keep", type=float, default=0.03)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--retrain_epochs", type=int, default=4)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain_in", choices=("dense", "coefficient"), default="dense")
    a = p.parse_args()

    import keras
    import numpy as np

    from dwt_keras.compression import (GradualCompression, get_state, retrain_coefficient_domain,
                                       save_compressed)
    from dwt_keras.data import load_arrays
    from dwt_keras.models import lenet300
    from dwt_keras.utils.io import atomic_write_json

    os.makedirs(a.out, exist_ok=True)
    keras.utils.set_random_seed(a.seed)
    s = load_arrays("mnist", data_dir=a.data_dir)
    model = lenet300()
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    best = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=a.epochs,
                                         restore_best_weights=True)
    model.fit(s.x_train, s.y_train, validation_data=(s.x_val, s.y_val), epochs=a.epochs,
              batch_size=a.batch_size, callbacks=[best], verbose=2)
    dense_test = float(model.evaluate(s.x_test, s.y_test, verbose=0)[1])
    model.save(os.path.join(a.out, "dense_model.keras"))

    steps = int(np.ceil(len(s.x_train) / a.batch_size))
    ramp = max(1, a.retrain_epochs // 2) * steps
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    gradual = GradualCompression(final_keep=a.keep, begin_step=0, end_step=ramp, frequency=100,
                                 basis=a.wavelet, verbose=0)
    ramp_epochs = a.retrain_epochs if a.retrain_in == "dense" else max(1, a.retrain_epochs // 2)
    t0 = time.perf_counter()
    model.fit(s.x_train, s.y_train, validation_data=(s.x_val, s.y_val), epochs=ramp_epochs,
              batch_size=a.batch_size, callbacks=[gradual], verbose=2)
    seconds = {"retrain_dense_s": time.perf_counter() - t0, "retrain_dense_epochs": ramp_epochs}
    if a.retrain_in == "coefficient" and a.retrain_epochs > ramp_epochs:
        t0 = time.perf_counter()
        retrain_coefficient_domain(model, s.x_train, s.y_train, validation_data=(s.x_val, s.y_val),
                                   initial_epoch=ramp_epochs, epochs=a.retrain_epochs,
                                   batch_size=a.batch_size, verbose=2)
        seconds.update({"retrain_coefficient_s": time.perf_counter() - t0,
                        "retrain_coefficient_epochs": a.retrain_epochs - ramp_epochs})
    info = save_compressed(model, os.path.join(a.out, "compressed_model.dwtc"))
    compressed_test = float(model.evaluate(s.x_test, s.y_test, verbose=0)[1])
    state = get_state(model)
    atomic_write_json(os.path.join(a.out, "train_info.json"), {
        "wavelet": a.wavelet, "keep": a.keep, "seed": a.seed, "epochs": a.epochs,
        "retrain_epochs": a.retrain_epochs, "batch_size": a.batch_size,
        "retrain_in": a.retrain_in, **seconds,
        "dense_test_accuracy": dense_test, "compressed_test_accuracy": compressed_test,
        "compressed_bytes": info["bytes"], "plan": state.plan_dicts(),
        "layers": state.layer_stats(),
    })
    print(json.dumps({"dense_test_accuracy": dense_test,
                      "compressed_test_accuracy": compressed_test, "bytes": info["bytes"]}))


if __name__ == "__main__":
    main()
