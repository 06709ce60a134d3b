"""Does compressibility training pay? LeNet-300-100 on MNIST, dense training with and without
the penalty, then pruned to a small keep ratio in the same basis.

Per configuration (penalty strengths) and seed: dense test accuracy; the share of the kernels'
energy in the largest `--keep` coefficients (global ranking: how compressible the weights are);
test accuracy right after pruning (one-shot) and after `--retrain_epochs` of retraining with
the mask held (the penalty stays on); dead output units (coefficient-group norm below 1e-3 of
the layer's largest) before pruning and after retraining.

    python benchmarks/bench_compressibility_penalty.py --data_dir /work/shared/data --seeds 0 1 2
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGS = {  # label: (l1, log_sum, group)
    "none": (0.0, 0.0, 0.0),
    "l1_3e-6": (3e-6, 0.0, 0.0),
    "l1_1e-5": (1e-5, 0.0, 0.0),
    "l1_3e-5": (3e-5, 0.0, 0.0),
    "log_sum_1e-7": (0.0, 1e-7, 0.0),
    "log_sum_3e-7": (0.0, 3e-7, 0.0),
    "group_1e-4": (0.0, 0.0, 1e-4),
    "group_1e-3": (0.0, 0.0, 1e-3),
    "l1_1e-5+group_1e-4": (1e-5, 0.0, 1e-4),
}


def run(label, seed, s, a):
    import keras
    import numpy as np

    from dwt_keras.compression import add_compressibility_penalty, constraints
    from dwt_keras.compression.bases import plan_model
    from dwt_keras.experiments.registry import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("lenet300", s.x_train.shape[1:], 10)
    l1, log_sum, group = CONFIGS[label]
    if l1 or log_sum or group:
        add_compressibility_penalty(model, basis=a.basis, l1=l1, log_sum=log_sum, group=group)

    def compile_():
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])

    def test_acc():
        return float(model.evaluate(s.x_test, s.y_test, verbose=0, batch_size=1000)[1])

    compile_()
    model.fit(s.x_train, s.y_train, epochs=a.epochs, batch_size=128, verbose=0)
    row = {"config": label, "seed": seed, "l1": l1, "log_sum": log_sum, "group": group,
           "dense_test_accuracy": test_acc()}
    state = constraints.CompressionState.create(model, plan_model(model, a.basis))
    coeffs = state.coefficients()  # before pruning
    row["dead_units_dense"] = {n: len(v) for n, v in state.dead_units(tol=1e-3).items()}
    state.prune(keep_ratio=a.keep)
    state.install()
    masks = state.mask_arrays()
    total = sum(float(np.sum(np.square(c, dtype=np.float64))) for c in coeffs.values())
    row["energy_in_kept"] = sum(float(np.sum(np.square(coeffs[n][masks[n]], dtype=np.float64)))
                                for n in coeffs) / total
    row["one_shot_test_accuracy"] = test_acc()
    compile_()
    model.fit(s.x_train, s.y_train, epochs=a.retrain_epochs, batch_size=128, verbose=0)
    row["retrained_test_accuracy"] = test_acc()
    row["dead_units_retrained"] = {n: len(v) for n, v in state.dead_units(tol=1e-3).items()}
    constraints.detach_state(model)
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data_dir", default=os.environ.get("DWT_KERAS_DATA_DIR"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--basis", default="haar")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--keep", type=float, default=0.02)
    p.add_argument("--retrain_epochs", type=int, default=1)
    p.add_argument("--out", default="compressibility_penalty")
    a = p.parse_args()

    from _record import Recorder

    rec = Recorder(a.out)
    import numpy as np

    from dwt_keras.data import load_arrays

    rows = []
    for seed in a.seeds:
        s = load_arrays("mnist", data_dir=a.data_dir, validation_split=0.1, seed=seed)
        for label in a.configs:  # configurations interleaved within a seed
            rows.append(run(label, seed, s, a))
            print(rows[-1], flush=True)
    summary = {}
    for label in a.configs:
        rs = [r for r in rows if r["config"] == label]
        summary[label] = {k: float(np.mean([r[k] for r in rs])) for k in
                          ("dense_test_accuracy", "energy_in_kept", "one_shot_test_accuracy",
                           "retrained_test_accuracy")}
        print(label, {k: round(v, 4) for k, v in summary[label].items()})
    print("wrote", rec.write({"model": "lenet300", "dataset": "mnist", "basis": a.basis,
                              "epochs": a.epochs, "keep": a.keep,
                              "retrain_epochs": a.retrain_epochs, "rows": rows,
                              "mean": summary}, seeds=a.seeds))


if __name__ == "__main__":
    main()
