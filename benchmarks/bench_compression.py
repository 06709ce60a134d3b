"""MNIST LeNet-300-100: dense test accuracy, and per basis the smallest compressed file whose
accuracy stays within 0.3 points of dense (selected on VALIDATION, reported on TEST).

    python benchmarks/bench_compression.py --epochs 10 --retrain_epochs 2 \
        --keep_ratios 0.05,0.03,0.02,0.015,0.01 --out benchmarks/results/compression_mnist

Writes sweep.csv / sweep.json / pareto.png and dense.json into --out.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--retrain_epochs", type=int, default=2)
    p.add_argument("--keep_ratios", default="0.05,0.03,0.02,0.015,0.01")
    p.add_argument("--bases", default="identity,dct,haar,db2,db4,sym4,coif2,bior2.2")
    p.add_argument("--quant_bits", type=int, default=6)
    p.add_argument("--tolerance", type=float, default=0.003)
    p.add_argument("--model", default="lenet300")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/compression_mnist")
    a = p.parse_args()

    import keras

    from dwt_keras.compression import pipeline, sweep
    from dwt_keras.data import make_datasets
    from dwt_keras.utils.io import atomic_write_json
    from dwt_keras.utils.seeding import set_seed

    set_seed(a.seed)
    cfg = pipeline.CompressionConfig(model=a.model, batch_size=a.batch_size, seed=a.seed)
    splits = pipeline.load_data(cfg)
    model = pipeline.build_model_for(cfg, splits.info)
    pipeline.compile_model(model, cfg, 1e-3)
    tr, va, _ = make_datasets(splits, batch_size=a.batch_size, seed=a.seed)
    t0 = time.perf_counter()
    hist = model.fit(tr, validation_data=va, epochs=a.epochs, verbose=2, callbacks=[
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)])
    dense_s = time.perf_counter() - t0
    os.makedirs(a.out, exist_ok=True)
    partial = os.path.join(a.out, "rows_partial.jsonl")
    if os.path.exists(partial):
        os.remove(partial)

    def on_row(row):
        with open(partial, "a") as f:
            f.write(json.dumps(row) + "\n")

    result = sweep.run_sweep(model, splits, bases=a.bases.split(","),
                             keep_ratios=[float(r) for r in a.keep_ratios.split(",")],
                             retrain_epochs=a.retrain_epochs, batch_size=a.batch_size,
                             bits=a.quant_bits, tolerance=a.tolerance, on_row=on_row)
    sweep.write_outputs(result, a.out, tolerance=a.tolerance,
                        title=f"MNIST {a.model}: test accuracy vs compressed file size")
    atomic_write_json(os.path.join(a.out, "dense.json"), {
        **result.dense, "epochs_run": len(hist.history["loss"]), "dense_train_seconds": dense_s,
        "n_train": splits.info["n_train"], "n_val": splits.info["n_val"],
        "n_test": splits.info["n_test"], "args": vars(a)})
    print(json.dumps({"dense": result.dense, "winner": result.winner,
                      "selected": result.selected}, indent=1))


if __name__ == "__main__":
    main()
