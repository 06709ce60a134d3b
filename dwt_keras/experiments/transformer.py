"""The transformer recipe behind `apps/wmsa_cifar10.py`: W-MSA or ViT image classifiers.

* AdamW (weight decay with norms, biases, embeddings and the kernel's bandwidths excluded),
  clip-norm 1, a linear warm-up then cosine decay (`lr_schedule="warmup_cosine"`), label
  smoothing, crop + flip (RandAugment, MixUp, CutMix on request): the engine's optimizer,
  schedule and augmentation with this recipe's defaults;
* the run folder is `<save_dir>/<run_name>`; `run_name` defaults to a name derived from the
  settings (`default_run_name`), so re-running the same command RESUMES the run:
  `BackupAndRestore` checkpoints weights, optimizer state and the epoch after every epoch,
  `history.csv` is appended, and the best-on-validation model (`best.keras`) keeps its best
  score across restarts. A finished run is not retrained (a later `--export` /
  `--saliency_images` is added to it without training);
* model selection on the VALIDATION split (best `val_accuracy`, `best.keras`), the report on the
  TEST split (accuracy, per-class precision / recall / F1, confusion matrix);
* spectral truncation low-passes training batches only; `best.keras` / `last.keras` hold the
  plain classifier. `batch_norm` does not apply (every block normalises with LayerNorm) and is
  refused.

Example:

```python
from dwt_keras.experiments.transformer import TransformerConfig, run_transformer
report = run_transformer(TransformerConfig(model="wmsa", dataset="cifar10_subset", epochs=10))
report["test"]["accuracy"]
```
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil

import keras

from dwt_keras import wavelets
from dwt_keras.evaluation import format_metrics_table
from dwt_keras.experiments.options import RunOptions, TrainingOptions, validate_common
from dwt_keras.experiments.recipe import Recipe, config_dict
from dwt_keras.experiments.registry import build_model, transformer_dims
from dwt_keras.experiments.run import Selection
from dwt_keras.spectral.options import SpectralOptions, spectral_report
from dwt_keras.spectral.setup import spectral_setup
from dwt_keras.training.augmentation import parse_augment
from dwt_keras.training.callbacks import attention_map_images, read_history
from dwt_keras.transformer.attention import validate_heads
from dwt_keras.utils.options import OptionError, option

__all__ = ["TransformerConfig", "TrainConfig", "TransformerRecipe", "run_transformer",
           "default_run_name", "MODELS"]

MODELS = ("wmsa", "vit")
MODEL_SIZE_CHOICES = ("tiny", "small", "base", "custom")


@dataclasses.dataclass
class TransformerConfig(SpectralOptions, TrainingOptions, RunOptions):
    """All settings of one transformer run (the flags of `apps/wmsa_cifar10.py`)."""

    # shared settings with this recipe's defaults
    dataset: str = option("cifar10")
    epochs: int = option(100)
    batch_size: int = option(128)
    optimizer: str = option("adamw")
    weight_decay: float = option(0.05)
    clipnorm: float = option(1.0)
    lr_schedule: str = option("warmup_cosine")
    warmup_epochs: int = option(5)
    label_smoothing: float = option(0.1)
    augment: str = option("crop_flip")
    dropout: float = option(0.0, "Dropout rate of the transformer blocks.")
    truncation_epochs: int = option(10)
    # the model
    model: str = option("wmsa", "wmsa (WaveletTransformer) or vit (baseline).", choices=MODELS)
    model_size: str = option("tiny", "tiny (96, 4, 3), small (192, 6, 3), base (384, 12, 6) as "
                             "(width, depth, heads); custom uses --embed_dim/--depth/--num_heads.",
                             choices=MODEL_SIZE_CHOICES)
    embed_dim: int = option(96, "Width for --model_size=custom.", minimum=1)
    depth: int = option(4, "Blocks for --model_size=custom.", minimum=1)
    num_heads: int = option(3, "Heads for --model_size=custom.", minimum=1)
    n_levels: int = option(3, "W-MSA: DWT levels J (2**J <= image side).", minimum=1)
    wavelet: str = option("db4", "W-MSA: PyWavelets wavelet name (haar, db2, db4, sym4, ...).")
    use_kernel: bool = option(True, "W-MSA: bias attention with the PSD wavelet kernel.")
    kernel_mode: str = option("fold", "W-MSA: kernel folded into extra q/k dims, or a shared "
                              "heads x N x N bias.", choices=("fold", "bias"))
    spatial_kernel: str = option("rbf", "W-MSA: spatial kernel (gibbs needs "
                                 "--kernel_mode=bias).", choices=("rbf", "gibbs"))
    embedding: str = option("per_subband", "W-MSA: token embedding per subband or shared.",
                            choices=("per_subband", "shared"))
    patch_size: int = option(4, "ViT patch side / W-MSA p x p grouping per subband.", minimum=1)
    mlp_ratio: float = option(2.0, "Width of the blocks' MLP as a multiple of the embedding.",
                              minimum=0.0, exclusive_minimum=True)
    drop_path_rate: float = option(0.1, "Stochastic depth (max rate).", minimum=0.0,
                                   maximum=1.0, exclusive_maximum=True)

    def validate(self):
        """Checks every setting that can be checked without data."""

        if self.max_train_samples == 0:
            self.max_train_samples = None
        validate_common(self)
        d, _, heads = transformer_dims(self.model_size, self.embed_dim, self.depth,
                                       self.num_heads)
        try:
            validate_heads(d, heads)
        except ValueError as e:
            raise OptionError("num_heads", str(e)) from None
        if self.model == "wmsa":
            try:
                wavelets.get_wavelet(self.wavelet)
            except ValueError as e:
                raise OptionError("wavelet", str(e)) from None
        if self.batch_norm:
            raise OptionError("batch_norm", "`batch_norm` is not applicable to the W-MSA / ViT "
                              "transformers: every block already normalises its tokens with "
                              "LayerNorm. Drop it. Received: batch_norm=True")
        parse_augment(self.augment)
        try:
            spectral_setup(self)
        except ValueError as e:
            raise OptionError("tau_init", str(e)) from None
        return self


#: The name of this config before the experiment engine (same fields).
TrainConfig = TransformerConfig


def default_run_name(config):
    """A deterministic run-folder name built from the settings that matter.

    The same command gives the same name, which is what makes a re-run resume.
    """

    c = config
    d, n_blocks, heads = transformer_dims(c.model_size, c.embed_dim, c.depth, c.num_heads)
    parts = [c.model, f"{c.model_size}", f"d{d}x{n_blocks}h{heads}", c.dataset]
    if c.model == "wmsa":
        parts += [c.wavelet, f"J{c.n_levels}", f"p{c.patch_size}",
                  "kernel" if c.use_kernel else "nokernel"]
    else:
        parts.append(f"p{c.patch_size}")
    # Only settings away from their defaults add a part, so the names of runs made before these
    # options existed (and their resumes) are unchanged.
    if c.spectral_reg:
        spec = (f"spectral_{c.mask_profile}_tau{c.tau_init:g}-{c.tau_final:g}"
                f"_te{c.truncation_epochs}")
        if c.mask_profile == "cosine" and float(c.mask_rolloff) != 0.1:
            spec += f"_roll{c.mask_rolloff:g}"
        parts.append(spec + ("_perstep" if c.spectral_per_step else ""))
    if c.lr_schedule != "warmup_cosine":
        parts.append(f"lr_{c.lr_schedule}")
    if c.l1:
        parts.append(f"l1_{c.l1:g}")
    if c.l2:
        parts.append(f"l2_{c.l2:g}")
    if c.early_stopping_patience:
        parts.append(f"es{c.early_stopping_patience}")
    if c.init_from:
        parts.append(f"init_{pathlib.Path(c.init_from).stem}" + ("_frozen" if c.freeze else ""))
    if c.cv_folds:
        parts.append(f"cv{c.cv_folds}")
    if c.ensemble > 1:
        parts.append(f"ens{c.ensemble}")
    parts += [f"e{c.epochs}", f"s{c.seed}"]
    return "-".join(str(p) for p in parts)


def _spectral_block(config, rows=()):
    return spectral_report(
        config, [r.get("spectral_tau") for r in rows], [r.get("spectral_phase") for r in rows],
        applied_to="training inputs only (validation and test data are never filtered)",
        saved_model="plain classifier (best.keras / last.keras hold no truncation layer)")


class TransformerRecipe(Recipe):
    """`apps/wmsa_cifar10.py`: one resumable training of a W-MSA or ViT classifier."""

    name = "wmsa"
    config_class = TransformerConfig
    resumable = True

    def run_name(self, config):
        return config.run_name or default_run_name(config)

    def train(self, run, splits, prepared):
        c = run.config
        info = dict(splits.info)
        num_classes = int(info["num_classes"])
        image_shape = tuple(int(s) for s in splits.x_train.shape[1:])
        spectral = spectral_setup(c, log_dir=f"{c.log_dir}/{run.log_name}/spectral"
                                  if c.log_dir else None)
        # Built before any training: bad levels / heads / patch sizes raise here.
        model = run.build(lambda: build_model(c.model, image_shape, num_classes, options=c),
                          num_classes)
        steps = run.steps_per_epoch(len(splits.x_train))
        run.compile(model, keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=float(c.label_smoothing)),
            lambda: [keras.metrics.CategoricalAccuracy(name="accuracy")], steps, c.epochs)
        train, validation, _ = run.datasets(splits, one_hot_classes=num_classes)
        tensorboard = None
        if c.log_dir:
            samples = splits.x_val if len(splits.x_val) else splits.x_test
            attention = attention_map_images(samples[:2])
            tensorboard = {"log_dir": f"{c.log_dir}/{run.log_name}", "sample_images": samples[:2],
                           "wavelet": c.wavelet, "level": c.n_levels,
                           "image_fns": {"attention": lambda m: attention(getattr(m, "inner", m))}}
        selection = Selection("val_accuracy", "max", patience=c.early_stopping_patience,
                              checkpoint=True)
        fit = run.fit(model, train, validation, c.epochs, "train", selection, spectral=spectral,
                      tensorboard=tensorboard)
        run.set_phase("test evaluation")
        best = run.load_selected()
        test = run.evaluate(best, splits)
        rows = read_history(run.dir / "history.csv")
        extras = {"options": {n: getattr(c, n) for n in _EXTRAS}}
        penalised = run.build_info["penalised_kernels"]
        if penalised:
            extras["regularization"] = {
                "l1": c.l1, "l2": c.l2, "penalised_kernels": penalised,
                # Measured on the final weights: the term added to the training loss.
                "penalty_last_epoch": float(sum(float(v) for v in model.losses))}
        if c.early_stopping_patience:
            extras["early_stopping"] = {
                "monitor": selection.monitor, "patience": int(c.early_stopping_patience),
                "epochs_run": len(rows), "stopped_early": len(rows) < int(c.epochs),
                "restored": "best.keras (the best epoch on the monitor) is reported and exported"}
        if run.build_info["transfer"] is not None:
            extras["transfer"] = run.build_info["transfer"]
        extras.update(run.finish(best, splits))
        report = {
            "run_dir": str(run.dir), "config": config_dict(c), "data": info,
            "n_train_used": int(len(splits.x_train)), "params": int(model.count_params()),
            "num_tokens": int(model.num_tokens),
            "mixed_precision_policy": keras.mixed_precision.global_policy().name,
            "selection": {"monitor": selection.monitor, "best_epoch": fit.best_epoch,
                          "best_value": fit.best_value},
            "fit_seconds_this_session": fit.seconds,
            "train_seconds_total": float(sum(r.get("epoch_time_s") or 0.0 for r in rows)),
            "spectral": _spectral_block(c, rows), "training_extras": extras,
            "history": rows, "test": test,
        }
        run.write_report(report)
        shutil.rmtree(run.dir / "backup", ignore_errors=True)
        print(f"[wmsa] run folder: {run.dir}")
        print(format_metrics_table(test))
        return report

    def complete_finished(self, run, config, report):
        """A later `--saliency_images` / `--export` acts on the finished run's model file."""

        extras = report.setdefault("training_extras", {})
        want_saliency = bool(config.saliency_images) and "saliency" not in extras
        want_export = config.export != "none" and \
            extras.get("export", {}).get("format") != config.export
        if want_saliency or want_export:
            late = dataclasses.replace(config,
                                       saliency_images=config.saliency_images if want_saliency
                                       else 0, export=config.export if want_export else "none")
            model_file = "ensemble.keras" if "ensemble" in report else "best.keras"
            best = keras.saving.load_model(run.dir / model_file, compile=False)
            late_run = type(run)(late, run.dir, run.environment, resumable=True,
                                 recipe=self.name)
            with late_run:
                extras.update(late_run.finish(best, self.load_data(late)))
                late_run.write_report(report)
        _print_summary(report)
        return report

    # ---- folds and members ------------------------------------------------------------
    def member_scalars(self, report):
        return {k: v for k, v in report["test"].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def member_model(self, report):
        return keras.saving.load_model(pathlib.Path(report["run_dir"]) / "best.keras",
                                       compile=False)

    def member_file(self, report):
        return str(pathlib.Path(report["run_dir"]) / "best.keras")

    def members_report(self, kind, result, parent, config, splits, reports):
        report = super().members_report(kind, result, parent, config, splits, reports)
        report.update(n_train_used=int(len(splits.x_train)), spectral=_spectral_block(config),
                      runs={pathlib.Path(r["run_dir"]).name: r["run_dir"] for r in reports})
        if kind == "cv":
            return report
        ensemble = report["ensemble"]
        report["test"] = ensemble["test"]
        report["training_extras"] = {"options": {n: getattr(config, n) for n in _EXTRAS},
                                     **ensemble.pop("training_extras")}
        ensemble["bytes_float32_weights_total"] = 4 * int(ensemble["params"]["total"])
        print(f"[wmsa] run folder: {parent.dir}")
        _print_summary(report)
        return report


_EXTRAS = ("lr_schedule", "augment", "l1", "l2", "dropout", "batch_norm", "cv_folds",
           "early_stopping_patience", "ensemble", "saliency_images", "init_from", "freeze",
           "export")


def _print_summary(report):
    if "test" in report:
        print(format_metrics_table(report["test"]))
    cv = report.get("cross_validation")
    if cv:
        acc = cv["summary"]["accuracy"]
        print(f"{cv['cv_folds']}-fold cross-validation, test accuracy "
              f"{acc['mean']:.4f} +- {acc['std']:.4f} (values {acc['values']})")


RECIPE = TransformerRecipe()


def run_transformer(config, splits=None):
    """Trains (or resumes) the transformer run of `config`; returns its report.

    With `cv_folds` or `ensemble`, one complete, resumable run per fold / member in
    sub-folders of the run folder (`fold<i>` / `member<i>`, seed `seed + i`), then the summary:
    the folds' test metrics' mean and std, or the logit-averaged ensemble (`ensemble.keras`).

    Raises:
        OptionError: for invalid settings, before any data is loaded or training starts.
    """
    return RECIPE.execute(config, splits)
