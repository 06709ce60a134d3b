"""Which basis keeps the most energy at a given keep ratio, per layer type, on trained weights.

Trains small models quickly (the issue-12 user's CNN and LeNet-5 / LeNet-300-100 on MNIST, the
CIFAR ResNet-20 on the CIFAR-10 subset), then, for every compressed layer and every candidate
(identity; the DCT and each wavelet at every exact level over the view that does not cross
channels; the same over the flattened view that does, as ``small_kernel_fallback="flatten"``
did; biorthogonal bior2.2; db2 in the redundant "symmetric"/"zero" modes), measures the share of
the kernel's energy kept when only the largest ``keep * n`` coefficients are kept:
``1 - ||W - W_k||^2 / ||W||^2`` in the weight domain (for orthonormal bases this is the energy of
the kept coefficients). Layer types: stem, conv3x3, conv1x1, conv5x5, dense_after_flatten (a
Dense fed by a flattened feature map), dense_on_image (LeNet-300's first layer), dense_hidden,
classifier.

It also records the test accuracy of each model pruned at one global keep ratio (default 5 %)
with identity, dct, db2 (new default fallback), db2 flattened (the old default), haar and auto:
right after pruning (for ResNet-20 also after BatchNorm recalibration) and after a short
retraining with the mask held (1 epoch on MNIST, 3 on the CIFAR subset; fresh Adam).

    python benchmarks/bench_auto_basis.py --data_dir /work/shared/data --seeds 0 1 2

`--dense_models model:seed:path ...` measures the energy on models trained elsewhere instead
(e.g. the dense_model.keras of the compression runs of the ResNet-20 recipe, trained to 68 %
where this script's own 12-epoch ResNet-20 reaches about 30 %); no accuracy variants then:

    python benchmarks/bench_auto_basis.py --dense_models resnet20:0:RUN0/dense_model.keras \
        resnet20:1:RUN1/dense_model.keras --out auto_basis_resnet20_trained
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KEEPS = (0.02, 0.05, 0.1, 0.2)
ORTHOGONAL = ("haar", "db2", "db3", "db4", "sym4", "coif1", "coif2")


def user_cnn(input_shape, num_classes):
    """The issue-12 user's CNN: conv 5x5 16 -> pool -> conv 5x5 32 -> pool -> flatten 4x4x32
    -> dense 128 -> dense classes."""
    import keras
    from keras import layers

    inp = keras.Input(input_shape)
    x = layers.Conv2D(16, 5, activation="relu", name="conv1")(inp)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(32, 5, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="fc1")(x)
    return keras.Model(inp, layers.Dense(num_classes, name="logits")(x), name="user_cnn")


def layer_type(layer, plan, num_classes, image_channels):
    cls = type(layer).__name__
    shape = plan.kernel_shape
    if cls == "Conv2D":
        kh, kw, cin, _ = shape
        if cin == image_channels and layer.name in ("conv1", "stem_conv"):
            return f"stem{kh}x{kw}"
        return f"conv{kh}x{kw}"
    if shape[-1] == num_classes:
        return "classifier"
    if plan.view == "receptive_field_hw":
        h, w, c, _ = plan.pre_shape
        return "dense_on_image" if c == image_channels else "dense_after_flatten"
    return "dense_hidden"


def energy_kept(transform, w, keep, orthonormal):
    """Share of ||W||^2 kept by the largest ceil(keep * n) coefficients (weight domain), with
    `transform` an `auto.NumpyTransform`."""
    import numpy as np

    from dwt_keras.compression import selection

    c = transform.forward(w)
    k = selection.budget(keep, w.size)
    if orthonormal:
        sq = np.sort(np.square(c))[::-1]
        return float(sq[:k].sum() / sq.sum())
    idx = np.argpartition(-np.abs(c), k - 1)[:k]
    kept = np.zeros_like(c)
    kept[idx] = c[idx]
    rec = transform.inverse(kept)
    return float(1.0 - np.sum((rec - w) ** 2) / np.sum(w.astype(np.float64) ** 2))


def candidates(layer):
    """(label, plan, orthonormal) for every measured candidate of a layer."""
    import warnings

    from dwt_keras.compression import bases

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in bases.candidate_plans(layer, ("identity", "dct") + ORTHOGONAL,
                                       small_kernel_fallback="flatten", warn=False):
            flat = "flattened" in p.view
            label = p.basis_name + (f"_L{p.level}" if p.basis == "wavelet" else "")
            out.append((label + ("@flat" if flat else ""), p, True))
        for basis, mode, tag in (("bior2.2", "periodization", "bior2.2"),
                                 ("db2", "symmetric", "db2_symmetric"),
                                 ("db2", "zero", "db2_zero")):
            p = bases.plan_layer(layer, basis, mode=mode, small_kernel_fallback="identity",
                                 warn=False)
            if p.basis == "wavelet":
                out.append((f"{tag}_L{p.level}", p, False))
    return out


def batch_size(name):
    return 64 if name == "resnet20" else 128


def train(name, seed, data_dir, epochs, n_train):
    import keras

    from dwt_keras.data import load_arrays
    from dwt_keras.experiments.registry import build_model

    keras.utils.set_random_seed(seed)
    dataset = "cifar10_subset" if name == "resnet20" else "mnist"
    s = load_arrays(dataset, data_dir=data_dir, validation_split=0.1, seed=seed)
    x, y = s.x_train[:n_train], s.y_train[:n_train]
    shape, classes = s.x_train.shape[1:], s.info["num_classes"]
    model = user_cnn(shape, classes) if name == "user_cnn" else build_model(name, shape, classes)
    compile_model(model, name)
    t = time.time()
    model.fit(x, y, epochs=epochs, batch_size=batch_size(name), verbose=0)
    acc = float(model.evaluate(s.x_test, s.y_test, verbose=0, batch_size=500)[1])
    return model, s, {"model": name, "seed": seed, "dataset": dataset, "n_train": int(len(x)),
                      "epochs": epochs, "train_seconds": round(time.time() - t, 1),
                      "dense_test_accuracy": acc, "params": int(model.count_params())}


def compile_model(model, name):
    import keras

    model.compile(keras.optimizers.Adam(1e-3 if name != "resnet20" else 2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])


VARIANTS = {  # label: (basis, small_kernel_fallback)
    "identity": ("identity", "dct"), "dct": ("dct", "dct"), "db2": ("db2", "dct"),
    "db2_flatten": ("db2", "flatten"), "haar": ("haar", "dct"), "auto": ("auto", "dct"),
    "auto_loss": ("auto_loss", "dct"),
}


def one_shot(model, s, keep, name, retrain_epochs, batch_size, variants):
    """Test accuracy right after pruning at `keep` (global scope), and after `retrain_epochs`
    of retraining with the mask held (fresh optimizer). ``auto_loss`` chooses on 1,000
    validation images."""
    import warnings

    from dwt_keras.compression import AutoBasis, compress_model, constraints
    from dwt_keras.training.batchnorm import recalibrate_batchnorm

    weights = model.get_weights()
    rows = []
    for label in variants:
        basis, fallback = VARIANTS[label]
        if basis == "auto_loss":
            basis = AutoBasis(criterion="loss", validation_data=(s.x_val[:1000], s.y_val[:1000]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = compress_model(model, keep_ratio=keep, basis=basis, install=True,
                                   small_kernel_fallback=fallback)
        row = {"variant": label, "keep": keep,
               "test_accuracy": float(model.evaluate(s.x_test, s.y_test, verbose=0,
                                                     batch_size=500)[1]),
               "bases": {p.layer: p.describe() for p in state.plans.values()}}
        if name == "resnet20":
            recalibrate_batchnorm(model, s.x_train, batches=20, batch_size=100)
            row["test_accuracy_bn_recalibrated"] = float(
                model.evaluate(s.x_test, s.y_test, verbose=0, batch_size=500)[1])
        if retrain_epochs:
            compile_model(model, name)
            model.fit(s.x_train, s.y_train, epochs=retrain_epochs, batch_size=batch_size,
                      verbose=0)
            row["retrain_epochs"] = retrain_epochs
            row["retrained_test_accuracy"] = float(
                model.evaluate(s.x_test, s.y_test, verbose=0, batch_size=500)[1])
            row["hold_error"] = state.max_hold_error()["projection_error"]
        rows.append(row)
        constraints.detach_state(model)
        model.set_weights(weights)
    return rows


def summarize(layer_rows):
    """Mean energy kept per layer type and candidate, over the candidates that every layer of
    the type has (so that means compare the same layers), and the best candidate per keep."""
    import numpy as np

    groups, by_type = {}, {}
    for r in layer_rows:
        key = (r["model"], r["seed"], r["layer"])
        groups.setdefault(r["type"], {}).setdefault(key, {})[r["candidate"]] = r["energy_kept"]
    for t, layers in groups.items():
        common = set.intersection(*(set(c) for c in layers.values()))
        by_type[t] = {fam: {str(k): float(np.mean([c[fam][str(k)] for c in layers.values()]))
                            for k in KEEPS} for fam in sorted(common)}
    best = {t: {str(k): max(fams, key=lambda f: fams[f][str(k)]) for k in KEEPS}
            for t, fams in by_type.items()}
    return by_type, best


def layer_rows_of(model, name, seed, num_classes, channels):
    """Energy kept by every candidate of every compressed layer of `model`."""
    import numpy as np

    from dwt_keras.compression import auto, bases

    rows = []
    for layer in bases.compressible_layers(model):
        w = np.asarray(bases.kernel_variable(layer).numpy())
        kind = layer_type(layer, bases.plan_layer(layer, "haar", warn=False), num_classes,
                          channels)
        for label, plan, ortho in candidates(layer):
            t = auto.NumpyTransform(plan)
            rows.append({
                "model": name, "seed": seed, "layer": layer.name, "type": kind,
                "kernel_shape": list(plan.kernel_shape), "candidate": label,
                "view": plan.view, "orthonormal": ortho,
                "energy_kept": {str(k): energy_kept(t, w, k, ortho) for k in KEEPS}})
    return rows


def measure_files(a):
    """`--dense_models`: the energy table of trained model files (no training, no variants)."""
    import keras

    from _record import Recorder

    rows, models = [], []
    for spec in a.dense_models:
        name, seed, path = spec.split(":", 2)
        model = keras.saving.load_model(path, compile=False)
        report = os.path.join(os.path.dirname(path), "report.json")
        acc = (json.load(open(report))["dense"]["test_accuracy"]
               if os.path.exists(report) else None)
        models.append({"model": name, "seed": int(seed), "from": path,
                       "dense_test_accuracy": acc, "params": int(model.count_params())})
        rows += layer_rows_of(model, name, int(seed), int(model.output_shape[-1]),
                              int(model.input_shape[-1]))
    table, best = summarize(rows)
    path = Recorder(a.out).write({"keeps": list(KEEPS), "models": models, "layers": rows,
                                  "mean_energy_kept_by_type": table, "best_by_type": best},
                                 seeds=sorted({m["seed"] for m in models}))
    print("wrote", path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data_dir", default=os.environ.get("DWT_KERAS_DATA_DIR"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", nargs="+", default=["user_cnn", "lenet5", "lenet300", "resnet20"])
    p.add_argument("--mnist_train", type=int, default=54000)
    p.add_argument("--mnist_epochs", type=int, default=3)
    p.add_argument("--resnet_epochs", type=int, default=12)
    p.add_argument("--one_shot_keep", type=float, default=0.05)
    p.add_argument("--retrain_epochs", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS)[:-1], choices=list(VARIANTS))
    p.add_argument("--skip_energy", action="store_true", help="only the accuracy variants")
    p.add_argument("--out", default="auto_basis")
    p.add_argument("--dense_models", nargs="+", default=None,
                   help="model:seed:path of trained .keras files to measure instead of training")
    a = p.parse_args()
    if a.dense_models:
        return measure_files(a)

    from _record import Recorder

    rec = Recorder(a.out)
    layer_rows, models, shots = [], [], []
    for seed in a.seeds:
        for name in a.models:
            epochs = a.resnet_epochs if name == "resnet20" else a.mnist_epochs
            model, s, info = train(name, seed, a.data_dir, epochs,
                                   4000 if name == "resnet20" else a.mnist_train)
            models.append(info)
            print(info, flush=True)
            if not a.skip_energy:
                layer_rows += layer_rows_of(model, name, seed, s.info["num_classes"],
                                            s.x_train.shape[-1])
            retrain = a.retrain_epochs * (3 if name == "resnet20" else 1)
            for row in one_shot(model, s, a.one_shot_keep, name, retrain, batch_size(name),
                                a.variants):
                shots.append({"model": name, "seed": seed, **row})
                print(shots[-1]["variant"], shots[-1]["test_accuracy"],
                      shots[-1].get("test_accuracy_bn_recalibrated", ""),
                      shots[-1].get("retrained_test_accuracy", ""), flush=True)

    table, best = summarize(layer_rows)
    for t in table:
        print(t, {k: (best[t][k], round(table[t][best[t][k]][k], 4),
                      round(table[t]["identity"][k], 4)) for k in map(str, KEEPS)})
    path = rec.write({"keeps": list(KEEPS), "models": models, "layers": layer_rows,
                      "mean_energy_kept_by_type": table, "best_by_type": best,
                      "one_shot": shots}, seeds=a.seeds)
    print("wrote", path)


if __name__ == "__main__":
    main()
