"""Model comparison tools: FLOPs, throughput, memory, saved-run accuracy and plots.

Used by `apps/compare_models.py`; everything here also runs from Python.

FLOPs are counted ANALYTICALLY per image for the forward pass, with a
multiply-add = 2 FLOPs: all matrix products (token embedding, q/k/v, attention
logits including the kernel's folded q/k dimensions, attention x values, output
projection, MLP, head) and, for W-MSA, the DWT filter bank (each output
coefficient of each 1-D analysis pass costs `dec_len` multiply-adds, which is
what `dwt_keras.wavelets` computes). Element-wise work (LayerNorm, softmax,
GELU, residuals, the bias add) is not counted; it is < 5% here. A training step
is roughly 3x the forward count.
"""

from __future__ import annotations

import inspect
import json
import pathlib
import resource
import statistics
import time
import zipfile

import numpy as np
import pywt

from dwt_keras.transformer.models import ViT, WaveletTransformer

#: Ablation / comparison variants: name -> (model kind, keyword overrides).
VARIANTS = {
    "vit": ("vit", {}),
    "wmsa": ("wmsa", {}),
    "wmsa_nokernel": ("wmsa", {"use_kernel": False}),
    "wmsa_bias": ("wmsa", {"kernel_mode": "bias"}),
    "wmsa_gibbs": ("wmsa", {"kernel_mode": "bias", "spatial_kernel": "gibbs"}),
    "wmsa_haar": ("wmsa", {"wavelet": "haar"}),
    "wmsa_db2": ("wmsa", {"wavelet": "db2"}),
    "wmsa_J2": ("wmsa", {"n_levels": 2}),
    "wmsa_p2": ("wmsa", {"patch_size": 2}),
    "wmsa_shared_embedding": ("wmsa", {"embedding": "shared"}),
    "wmsa_no_token_norm": ("wmsa", {"token_norm": "none"}),
    "wmsa_kernel_lr1": ("wmsa", {"kernel_lr_multiplier": 1.0}),
    # The model as it was before token_norm / kernel_lr_multiplier existed.
    "wmsa_previous": ("wmsa", {"token_norm": "none", "kernel_lr_multiplier": 1.0}),
}

#: W-MSA settings that a run's config.json (the training config) does not hold;
#: `collect_runs` reads them from the saved model. The value used when the saved
#: model lacks one is the behaviour of models saved before it existed.
MODEL_ONLY_SETTINGS = {"token_norm": "none", "kernel_lr_multiplier": 1.0}


def build_variant(name, image_size=(32, 32), in_channels=3, num_classes=10, model_size="tiny"):
    """Builds (and builds the weights of) one of `VARIANTS`."""
    if name not in VARIANTS:
        raise ValueError(f"Unknown variant {name!r}; choose from {sorted(VARIANTS)}.")
    kind, over = VARIANTS[name]
    common = dict(
        image_size=image_size, in_channels=in_channels, num_classes=num_classes, model_size=model_size
    )
    model = ViT(patch_size=4, **common) if kind == "vit" else WaveletTransformer(**common, **over)
    model.build((None,) + tuple(image_size) + (in_channels,))
    return model


def dwt_flops(image_size, channels, n_levels, wavelet, mode):
    """Filter-bank FLOPs of a separable J-level 2-D analysis (2 * dec_len per output)."""
    L = pywt.Wavelet(wavelet).dec_len
    h, w = image_size
    total = 0
    for _ in range(n_levels):
        h2 = pywt.dwt_coeff_len(h, L, mode)
        w2 = pywt.dwt_coeff_len(w, L, mode)
        total += 2 * L * (2 * h2) * w * channels  # pass along rows: lo + hi outputs
        total += 2 * L * (2 * h2) * (2 * w2) * channels  # pass along columns
        h, w = h2, w2
    return total


def count_flops(model):
    """Analytic forward FLOPs per image, by part (see the module docstring)."""
    n, d = model.num_tokens, model.embed_dim
    heads = model.num_heads
    out = {}
    if isinstance(model, WaveletTransformer):
        out["dwt"] = dwt_flops(model.image_size, model.in_channels, model.n_levels, model.wavelet, model.mode)
    else:
        out["dwt"] = 0
    out["embedding"] = 2 * n * model.tokenizer.token_dim * d
    extra = 0
    if model.use_kernel and model.kernel_mode == "fold":
        extra = heads * model.blocks[0].attn.kernel.fold_dim
    hidden = model.blocks[0].fc1.units
    per_block = {
        "qkv": 2 * n * d * 3 * d,
        "logits": 2 * n * n * (d + extra),
        "attn_v": 2 * n * n * d,
        "proj": 2 * n * d * d,
        "mlp": 2 * n * d * hidden * 2,
    }
    out["blocks"] = model.depth * sum(per_block.values())
    out["per_block"] = per_block
    out["head"] = 2 * d * model.num_classes
    out["total"] = out["dwt"] + out["embedding"] + out["blocks"] + out["head"]
    return out


def _peak_rss_mb():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_speed(model, batch_size=128, repeats=10, warmup=2, seed=0):
    """Median train-step and inference time on one fixed random batch.

    Returns ms per batch and images/s for a compiled training step
    (`train_on_batch`, AdamW) and for a `tf.function` forward pass, plus peak
    memory: GPU peak bytes where a GPU is used, else the process's peak RSS.
    """
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    shape = (batch_size,) + tuple(model.image_size) + (model.in_channels,)
    x = tf.constant(rng.random(shape, dtype=np.float32))
    y = tf.constant(np.eye(model.num_classes, dtype=np.float32)[rng.integers(0, model.num_classes, batch_size)])
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    rss0 = _peak_rss_mb()
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    for _ in range(max(1, warmup)):
        model.train_on_batch(x, y)
    train_t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        train_t.append(time.perf_counter() - t0)
    infer = tf.function(lambda t: model(t, training=False))
    for _ in range(max(1, warmup)):
        infer(x).numpy()
    inf_t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        infer(x).numpy()
        inf_t.append(time.perf_counter() - t0)
    tr, inf = statistics.median(train_t), statistics.median(inf_t)
    out = {
        "batch_size": batch_size,
        "repeats": repeats,
        "train_ms_per_batch": tr * 1e3,
        "train_images_per_s": batch_size / tr,
        "infer_ms_per_batch": inf * 1e3,
        "infer_ms_per_image": inf * 1e3 / batch_size,
        "infer_images_per_s": batch_size / inf,
    }
    if gpu:
        out["peak_memory_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        out["peak_memory_kind"] = "GPU peak allocated"
    else:
        out["peak_memory_mb"] = _peak_rss_mb()
        out["peak_memory_growth_mb"] = _peak_rss_mb() - rss0
        out["peak_memory_kind"] = "process peak RSS (CPU)"
    return out


def measure_variant(name, batch_size=128, repeats=10, model_size="tiny", image_size=(32, 32),
                    in_channels=3, num_classes=10):
    """Params, FLOPs and speed of one variant (run it in a fresh process for memory)."""
    import keras

    keras.utils.set_random_seed(0)
    model = build_variant(name, image_size, in_channels, num_classes, model_size)
    row = {
        "variant": name,
        "params": int(model.count_params()),
        "tokens": int(model.num_tokens),
        "flops_forward_per_image": count_flops(model),
    }
    row.update(measure_speed(model, batch_size=batch_size, repeats=repeats))
    return row


def saved_model_settings(run_dir):
    """`MODEL_ONLY_SETTINGS` of the W-MSA saved as ``run_dir/best.keras`` ({} if none).

    Reads the model config stored inside the .keras archive; nothing is built.
    """
    try:
        with zipfile.ZipFile(pathlib.Path(run_dir) / "best.keras") as archive:
            saved = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}
    if saved.get("class_name") != "WaveletTransformer":
        return {}
    config = saved.get("config", {})
    return {k: config.get(k, legacy) for k, legacy in MODEL_ONLY_SETTINGS.items()}


def _wavelet_transformer_defaults(names):
    params = inspect.signature(WaveletTransformer.__init__).parameters
    return {n: params[n].default for n in names}


def variant_of_config(cfg):
    """The `VARIANTS` name (or a descriptive key) of a saved run's config.json.

    `cfg` may also hold `MODEL_ONLY_SETTINGS` (see `saved_model_settings`); when
    it does not, the current `WaveletTransformer` defaults are assumed.
    """
    if cfg.get("model") == "vit":
        return "vit" if cfg.get("patch_size", 4) == 4 else f"vit_p{cfg['patch_size']}"
    base = dict(use_kernel=True, kernel_mode="fold", spatial_kernel="rbf", wavelet="db4",
                n_levels=3, patch_size=4, embedding="per_subband",
                **_wavelet_transformer_defaults(MODEL_ONLY_SETTINGS))
    diff = {k: cfg.get(k, v) for k, v in base.items() if cfg.get(k, v) != v}
    if not cfg.get("use_kernel", True):
        # Without a kernel its settings change nothing.
        for k in ("kernel_mode", "spatial_kernel", "kernel_lr_multiplier"):
            diff.pop(k, None)
    for name, (kind, over) in VARIANTS.items():
        if kind == "wmsa" and over == diff:
            return name
    return "wmsa_" + "_".join(f"{k}={v}" for k, v in sorted(diff.items()))


def collect_runs(runs_dir):
    """Test accuracy of the runs (report.json) under `runs_dir`, grouped.

    Args:
        runs_dir: a folder, or a list of folders, searched recursively (pass finished run
            folders: `dwt_keras.experiments.compare.finished_runs` finds them). Reports without
            a single model's test metrics (cross-validation summaries) are skipped.

    Groups by (variant, model_size, dataset, epochs) and reports mean and
    sample standard deviation over seeds. The variant includes the W-MSA
    settings stored only in the saved model (`saved_model_settings`).
    """
    dirs = [runs_dir] if isinstance(runs_dir, (str, pathlib.Path)) else list(runs_dir)
    paths = sorted({p for d in dirs for p in pathlib.Path(d).rglob("report.json")})
    groups = {}
    for path in paths:
        rep = json.loads(path.read_text())
        if "test" not in rep or "config" not in rep:
            continue
        cfg = dict(rep["config"])
        if cfg.get("model") == "wmsa":
            cfg.update(saved_model_settings(path.parent))
        key = (variant_of_config(cfg), cfg.get("model_size"), cfg.get("dataset"), cfg.get("epochs"))
        groups.setdefault(key, []).append(rep)
    out = []
    for (variant, size, dataset, epochs), reps in sorted(groups.items(), key=lambda kv: str(kv[0])):
        acc = np.array([r["test"]["accuracy"] for r in reps])
        out.append({
            "variant": variant,
            "model_size": size,
            "dataset": dataset,
            "epochs": epochs,
            "seeds": sorted(r["config"]["seed"] for r in reps),
            "test_accuracy_mean": float(acc.mean()),
            "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else None,
            "test_f1_macro_mean": float(np.mean([r["test"]["f1_macro"] for r in reps])),
            "params": reps[0].get("params"),
            "run_dirs": [r.get("run_dir") for r in reps],
        })
    return out


def markdown_table(rows, accuracy_rows):
    """The comparison as markdown (speed/size table, then saved-run accuracy table)."""
    lines = []
    if rows:
        ref = next((r for r in rows if r["variant"] == "vit"), None)
        lines += [
            "| variant | params | tokens | fwd GFLOPs/img | train img/s | infer ms/img | train time / ViT | peak mem MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            ratio = (r["train_ms_per_batch"] / ref["train_ms_per_batch"]) if ref else float("nan")
            lines.append(
                f"| {r['variant']} | {r['params']:,} | {r['tokens']} | "
                f"{r['flops_forward_per_image']['total'] / 1e9:.3f} | {r['train_images_per_s']:.0f} | "
                f"{r['infer_ms_per_image']:.3f} | {ratio:.2f} | {r['peak_memory_mb']:.0f} |"
            )
    if accuracy_rows:
        lines += [
            "",
            "| variant | size | dataset | epochs | seeds | test accuracy (mean ± std) | macro F1 |",
            "|---|---|---|---:|---|---:|---:|",
        ]
        for a in accuracy_rows:
            std = "" if a["test_accuracy_std"] is None else f" ± {a['test_accuracy_std']:.4f}"
            lines.append(
                f"| {a['variant']} | {a['model_size']} | {a['dataset']} | {a['epochs']} | "
                f"{','.join(map(str, a['seeds']))} | {a['test_accuracy_mean']:.4f}{std} | "
                f"{a['test_f1_macro_mean']:.4f} |"
            )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots
def plot_attention_maps(model, image, path, block=-1, query=None):
    """Attention of one query token to every token, per head, laid out per subband.

    For W-MSA each subband's attention is shown at its own grid; the query is
    the approximation token by default (`query` = token index).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dwt_keras.utils.io import atomic_save_figure

    image = np.asarray(image, dtype="float32")[None]
    probs = np.asarray(model.attention_maps(image)[block])[0]  # (heads, N, N)
    meta = model.token_metadata()
    q = 0 if query is None else int(query)
    heads = probs.shape[0]
    subbands = np.unique(meta["subband"])
    grids = _subband_grids(model)
    ncols = len(subbands) + 1
    fig, axes = plt.subplots(heads, ncols, figsize=(1.6 * ncols, 1.6 * heads + 0.4), squeeze=False)
    names = "AHVD"
    for h in range(heads):
        ax = axes[h, 0]
        ax.imshow(np.clip(image[0], 0, 1).squeeze(), cmap=None if image.shape[-1] == 3 else "gray")
        ax.set_title(f"head {h}", fontsize=7)
        ax.axis("off")
        vmax = probs[h, q].max()
        for c, s in enumerate(subbands):
            sel = meta["subband"] == s
            gh, gw = grids[int(s)]
            ax = axes[h, c + 1]
            ax.imshow(probs[h, q, sel].reshape(gh, gw), vmin=0, vmax=vmax, cmap="viridis")
            j, o = int(meta["level"][sel][0]), int(meta["orientation"][sel][0])
            ax.set_title(f"{names[o]}{j}" if int(sel.sum()) != model.num_tokens else "patches", fontsize=7)
            ax.axis("off")
    fig.suptitle(f"attention of token {q} (block {block}), per head and subband", fontsize=8)
    atomic_save_figure(fig, path)
    plt.close(fig)
    return path


def _subband_grids(model):
    tok = model.tokenizer
    if hasattr(tok, "_grid"):
        return list(tok._grid)
    return [tok.grid]


def plot_learned_kernel(model, path):
    """The learned kernel: K over all tokens per head (last block), and its factors."""
    import keras
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dwt_keras.utils.io import atomic_save_figure

    kernels = model.learned_kernels()
    if not kernels:
        raise ValueError("This model has no wavelet kernel (use_kernel=False or a ViT).")
    K = kernels[-1]
    kern = model.blocks[-1].attn.kernel
    heads = K.shape[0]
    s = keras.ops.convert_to_numpy(kern.scale_bandwidths())
    rho = keras.ops.convert_to_numpy(kern.rhos())
    bw = keras.ops.convert_to_numpy(kern.spatial_bandwidth_values())
    fig, axes = plt.subplots(2, heads, figsize=(3.2 * heads, 6.2), squeeze=False)
    d = np.linspace(0, 1.0, 200)
    for h in range(heads):
        ax = axes[0, h]
        ax.imshow(np.log(np.maximum(K[h], 1e-30)), cmap="magma")
        ax.set_title(f"head {h}: log K over {K.shape[1]} tokens", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax = axes[1, h]
        bwh = np.atleast_1d(bw[h])
        for lvl, b in enumerate(bwh):
            ax.plot(d, np.exp(-(d**2) / (2 * b**2)),
                    label=f"spatial (l={b:.2f})" if len(bwh) == 1 else f"spatial, level {lvl + 1} (l={b:.2f})")
        dj = np.arange(0, kern.n_levels)
        ax.plot(dj / max(1, kern.n_levels - 1), np.exp(-(dj**2) / (2 * s[h] ** 2)), "o--",
                label=f"scale, |dj| (s={s[h]:.2f})")
        ax.axhline(rho[h], color="k", ls=":", label=f"orientation rho={rho[h]:.2f}")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("distance (image units) / |dj| scaled", fontsize=7)
        ax.legend(fontsize=6)
    fig.suptitle("learned W-MSA kernel (last block)", fontsize=9)
    atomic_save_figure(fig, path)
    plt.close(fig)
    return path
