"""Figures: an image at several tau (the frequency progression) and the radial masks."""

import numpy as np

from dwt_keras.spectral.truncation import (
    _mask_from_radius,
    _validate_rolloff,
    spectral_mask,
    validate_profile,
    validate_tau,
)

__all__ = ["plot_tau_progression", "plot_mask_profiles", "plot_study_curves", "DEFAULT_TAUS"]

DEFAULT_TAUS = (0.05, 0.1, 0.2, 0.4, 0.7, 1.0)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _check_taus(taus):
    taus = [validate_tau(t) for t in taus]
    if not taus:
        raise ValueError("taus is empty; give at least one cut-off in (0, 1].")
    return taus


def plot_tau_progression(image, path, taus=DEFAULT_TAUS, profile="cosine", rolloff=0.1):
    """Saves a PNG of `image` low-passed at each `tau` (top) and the masks (bottom).

    Args:
        image: one image `(H, W, C)` (or `(1, H, W, C)`), values in [0, 1].
        path: output file (written atomically).
        taus: cut-offs in (0, 1].
        profile: `"linear"` or `"cosine"`.
        rolloff: cosine roll-off width.

    Returns:
        The path written.
    """
    import tensorflow as tf

    from dwt_keras.spectral.dct import lowpass_dct2
    from dwt_keras.utils.io import atomic_save_figure

    taus = _check_taus(taus)
    validate_profile(profile)
    rolloff = _validate_rolloff(rolloff)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 3:
        raise ValueError(
            f"plot_tau_progression expects one image (H, W, C); got shape {np.shape(image)}."
        )
    h, w, c = img.shape
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(taus) + 1, figsize=(2.0 * (len(taus) + 1), 4.2))
    show = lambda ax, a: ax.imshow(np.clip(a[..., 0] if c == 1 else a, 0, 1),
                                   cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    show(axes[0, 0], img)
    axes[0, 0].set_title("original")
    axes[1, 0].axis("off")
    axes[1, 0].text(0.5, 0.5, f"{profile} mask\n(DCT domain,\nDC top-left)",
                    ha="center", va="center", transform=axes[1, 0].transAxes)
    for i, tau in enumerate(taus, start=1):
        mask = spectral_mask(h, w, tau, profile, rolloff)
        out = lowpass_dct2(tf.constant(img[None]), tf.constant(mask)).numpy()[0]
        show(axes[0, i], out)
        axes[0, i].set_title(f"tau = {tau:g}")
        axes[1, i].imshow(mask, cmap="viridis", vmin=0, vmax=1)
        axes[1, i].set_title(f"mean gain {mask.mean():.2f}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Spectral truncation, {profile} profile: the frequency progression")
    return atomic_save_figure(fig, path)


def plot_mask_profiles(path, taus=(0.05, 0.25, 0.5, 0.75, 1.0), rolloff=0.1):
    """Saves a PNG of the radial mask profiles m(r) against the normalised radius.

    Three panels: the published linear mask on its own radius (plotted
    against the normalised radius r = r_pub / sqrt(2)), the linear mask on the
    normalised radius, and the cosine mask.

    Args:
        path: output file (written atomically).
        taus: cut-offs in (0, 1].
        rolloff: cosine roll-off width.

    Returns:
        The path written.
    """
    from dwt_keras.utils.io import atomic_save_figure

    taus = _check_taus(taus)
    rolloff = _validate_rolloff(rolloff)
    r = np.linspace(0.0, 1.0, 501, dtype=np.float32)
    panels = [
        ("published: max(0, (tau - r_pub)/tau),\nr_pub = sqrt(2) r", "linear", np.sqrt(2.0) * r, None),
        ("linear on normalised r", "linear", r, None),
        (f"cosine (roll-off {rolloff:g}); identity at tau = 1", "cosine", r, rolloff),
    ]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(taus)))
    for ax, (title, profile, radius, ro) in zip(axes, panels):
        for tau, col in zip(taus, colors):
            m = np.asarray(_mask_from_radius(radius, np.float32(tau), profile, np.float32(ro or 0.1)))
            ax.plot(r, m, color=col, label=f"tau = {tau:g}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("normalised DCT radius r")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mask gain")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle("Radial DCT masks, r = sqrt((u/H)^2 + (v/W)^2) / sqrt(2) in [0, 1)")
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def plot_study_curves(results, path):
    """Saves a PNG of test accuracy per epoch (mean ± std over seeds) per condition.

    Args:
        results: the dict written by `study.run_study` (or loaded from its JSON).
        path: output file (written atomically).

    Returns:
        The path written.
    """
    from dwt_keras.utils.io import atomic_save_figure

    runs = results.get("runs") if isinstance(results, dict) else None
    if not runs:
        raise ValueError("results has no runs; pass the dict written by run_study.")
    cfg = results.get("config", {})
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for cond in dict.fromkeys(r["condition"] for r in runs):
        curves = [[h["test_accuracy"] for h in r["history"]] for r in runs if r["condition"] == cond]
        n = min(len(c) for c in curves)
        a = np.asarray([c[:n] for c in curves])
        ep = np.arange(1, n + 1)
        mean, std = a.mean(0), a.std(0)
        ax.plot(ep, mean, label=f"{cond} (n={len(a)})")
        ax.fill_between(ep, mean - std, mean + std, alpha=0.2)
    if cfg.get("truncation_epochs"):
        ax.axvline(cfg["truncation_epochs"] + 0.5, color="gray", ls="--", lw=1,
                   label="truncation off")
    if cfg.get("target_accuracy"):
        ax.axhline(cfg["target_accuracy"], color="k", ls=":", lw=1, label="target")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Spectral-truncation study: test accuracy (mean ± std over seeds)")
    return atomic_save_figure(fig, path)
