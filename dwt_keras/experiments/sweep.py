"""Basis x keep-ratio sweeps (`apps/compression_sweep.py`): which basis gives the smallest file
at a given accuracy?

The dense model is trained once (the compression recipe's dense phase, or loaded with
`init_model`); then, for each basis, the model starts from the same trained weights and walks
down the keep ratios (iterative pruning): at each ratio it is pruned in that basis, retrained
with the masks held (early stopping on the validation split), written to a compressed file,
reloaded, and the reloaded model is evaluated on the validation and test splits. The smallest
file whose *validation* accuracy stays within `tolerance` of the dense model's is selected per
basis; its *test* accuracy is reported (selection never looks at the test split). Outputs:
`sweep.csv`, `sweep.json`, `pareto.png` and the run's `report.json`.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import keras

from dwt_keras.compression import bases, constraints, storage
from dwt_keras.compression.api import compress_model
from dwt_keras.compression.report import plot_pareto
from dwt_keras.compression.sizes import dense_float32_bytes
from dwt_keras.experiments.compression import (
    CompressionConfig,
    _loss_and_metrics,
    build,
    train_dense,
)
from dwt_keras.experiments.recipe import Recipe, config_dict
from dwt_keras.experiments.run import Selection
from dwt_keras.spectral.options import spectral_report
from dwt_keras.spectral.setup import spectral_setup
from dwt_keras.utils.io import atomic_write_bytes
from dwt_keras.utils.options import OptionError, option

__all__ = ["SweepConfig", "SweepRecipe", "run_sweep", "select_rows", "DEFAULT_BASES"]

DEFAULT_BASES = ("identity", "dct", "haar", "db2", "db4", "sym4", "coif2", "bior2.2")


@dataclasses.dataclass
class SweepConfig(CompressionConfig):
    """A sweep's settings: the compression recipe's, plus the bases and keep ratios walked.

    `retrain_epochs` are per keep ratio; `retrain_patience` is the early stopping of each
    retraining (on the validation loss, restoring the best weights).
    """

    batch_size: int = option(128)
    retrain_epochs: int = option(2, "Retraining epochs per keep ratio.")
    bases: tuple = option(DEFAULT_BASES, "Bases to compare.", list_of=str)
    keep_ratios: tuple = option((0.05, 0.03, 0.02, 0.01), "Decreasing keep ratios.",
                                list_of=float, minimum=0.0, exclusive_minimum=True, maximum=1.0)
    tolerance: float = option(0.003, "Allowed validation accuracy drop for the selection.",
                              minimum=0.0)
    retrain_patience: int = option(1, "Early-stopping patience of each retraining (0: off).",
                                   minimum=0)
    init_model: str | None = option(None, "A trained .keras model to start from (skips "
                                    "training).")

    def validate(self):
        super().validate()
        for b in self.bases:
            try:
                bases.basis_kind(b)
            except ValueError as e:
                raise OptionError("bases", str(e)) from None
        ratios = [float(r) for r in self.keep_ratios]
        if any(b > a for a, b in zip(ratios, ratios[1:])):
            raise OptionError("keep_ratios", "`keep_ratios` must be decreasing. "
                                             f"Received: keep_ratios={self.keep_ratios}")
        if self.init_model and self.spectral_reg:
            raise OptionError("init_model", "spectral_reg acts on the dense training, which "
                                            "init_model skips; drop one of them.")
        return self


def select_rows(rows, dense, tolerance=0.003):
    """Per basis: the smallest file whose VALIDATION accuracy is within `tolerance` of the
    dense model's validation accuracy (None if no ratio qualifies)."""
    out = {}
    for basis in dict.fromkeys(r["basis"] for r in rows):
        ok = [r for r in rows if r["basis"] == basis
              and r["val_accuracy"] >= dense["val_accuracy"] - tolerance - 1e-12]
        out[basis] = min(ok, key=lambda r: r["bytes_compressed_file"]) if ok else None
    return out


class SweepRecipe(Recipe):
    """`apps/compression_sweep.py`."""

    name = "sweep"
    config_class = SweepConfig

    def run_prefix(self, config):
        model = config.model if not config.init_model else \
            os.path.splitext(os.path.basename(config.init_model))[0]
        return f"sweep-{config.dataset}-{model}"

    def train(self, run, splits, prepared):
        c = run.config
        spectral = spectral_setup(c)
        history = {}
        if c.init_model:
            model = keras.models.load_model(c.init_model)
        else:
            model = run.build(lambda: build(c, splits.info), splits.info["num_classes"])
            train, validation, _ = run.datasets(splits)
            fit = train_dense(run, model, c, train, validation,
                              run.steps_per_epoch(len(splits.x_train)), spectral)
            history = fit.history
        run.set_phase("dense evaluation")
        val = run.evaluate(model, _Split(splits.x_val, splits.y_val, splits.info))
        test = run.evaluate(model, splits)
        dense = {"val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"],
                 "test_loss": test["test_loss"], "bytes_float32": dense_float32_bytes(model)}
        run.say(f"dense: val {dense['val_accuracy']:.4f} test {dense['test_accuracy']:.4f}")
        rows = self._walk(run, model, splits, dense)
        selected = select_rows(rows, dense, c.tolerance)
        candidates = [r for r in selected.values() if r is not None]
        winner = min(candidates, key=lambda r: r["bytes_compressed_file"])["basis"] \
            if candidates else None
        result = {"dense": dense, "tolerance": c.tolerance,
                  "selection": "smallest file with validation accuracy >= dense validation "
                               "accuracy - tolerance; test accuracy reported",
                  "selected": selected, "winner": winner, "rows": rows,
                  "spectral": spectral_report(spectral.options,
                                              history.get("spectral_tau", []),
                                              history.get("spectral_phase", [])),
                  "config": config_dict(c)}
        self._write(run, result, c)
        for basis, row in selected.items():
            if row is None:
                print(f"{basis:>8}: no keep ratio within {c.tolerance:.3f} on validation")
            else:
                print(f"{basis:>8}: keep {row['keep_ratio']:<6} "
                      f"{row['bytes_compressed_file']:>8,} B ({row['compression_ratio']:.1f}x), "
                      f"test accuracy {row['test_accuracy']:.4f}")
        print(f"winner (smallest file within tolerance on validation): {winner}")
        print(f"Wrote {run.dir}")
        return result

    def _walk(self, run, model, splits, dense):
        c = run.config
        weights = [w.copy() for w in model.get_weights()]
        architecture = model.to_json()
        train, validation, _ = run.datasets(splits)
        steps = run.steps_per_epoch(len(splits.x_train))
        loss, metrics = _loss_and_metrics()
        val_split = _Split(splits.x_val, splits.y_val, splits.info)
        rows = []
        # The files only exist to be measured and reloaded; nothing of them is kept.
        with tempfile.TemporaryDirectory(prefix="dwt_sweep_") as tmp:
            for basis in c.bases:
                keras.backend.clear_session()
                m = keras.models.model_from_json(architecture)
                m.set_weights(weights)
                for ratio in (float(r) for r in c.keep_ratios):
                    t0 = time.perf_counter()
                    compress_model(m, keep_ratio=ratio, basis=basis, mode=c.mode, level=c.level,
                                   scope=c.scope, min_kernel_size=c.min_kernel_size,
                                   install=True)
                    run.compile(m, loss, metrics, steps, c.retrain_epochs)
                    if c.retrain_epochs > 0:
                        run.fit(m, train, validation, c.retrain_epochs, f"{basis}-{ratio}",
                                Selection("val_loss", "min", patience=c.retrain_patience))
                    path = os.path.join(tmp, f"{basis}_{ratio}.dwtc")
                    info = storage.save_compressed(m, path, quantize=c.stored_quantize,
                                                   bits=c.quant_bits, codec=c.codec)
                    loaded = storage.load_compressed(path)
                    val = run.evaluate(loaded, val_split)
                    test = run.evaluate(loaded, splits)
                    state = constraints.get_state(m)
                    row = {
                        "basis": basis, "keep_ratio": ratio, "retrain_epochs": c.retrain_epochs,
                        "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"],
                        "test_loss": test["test_loss"], "bytes_compressed_file": info["bytes"],
                        "compression_ratio": dense["bytes_float32"] / info["bytes"],
                        "coefficient_sparsity": state.coefficient_sparsity(),
                        "max_abs_weight_error": info["max_abs_weight_error"],
                        "mask_projection_error": state.max_hold_error()["projection_error"],
                        "seconds": time.perf_counter() - t0,
                    }
                    rows.append(row)
                    run.say(f"{basis:>8} keep {ratio:<6} val {row['val_accuracy']:.4f} test "
                            f"{row['test_accuracy']:.4f} {info['bytes']:>8,} B "
                            f"({row['compression_ratio']:.1f}x) [{row['seconds']:.0f}s]")
                    run.write_report({"dense": dense, "rows": rows, "complete": False})
        return rows

    @staticmethod
    def _write(run, result, c):
        import csv
        import io

        buf = io.StringIO()
        if result["rows"]:
            writer = csv.DictWriter(buf, fieldnames=list(result["rows"][0]))
            writer.writeheader()
            writer.writerows(result["rows"])
        run._guard_disk(lambda: atomic_write_bytes(run.dir / "sweep.csv",
                                                   buf.getvalue().encode()), "sweep.csv")
        run.write_json("sweep.json", result)
        if c.plots:
            run.write_figure(lambda p: plot_pareto(result["rows"], result["dense"], p,
                                                   c.tolerance, f"{c.dataset} / {c.model}"),
                             "pareto.png")


@dataclasses.dataclass
class _Split:
    """A validation split in the shape `Run.evaluate` reads (as the test split)."""

    x_test: object
    y_test: object
    info: dict


RECIPE = SweepRecipe()


def run_sweep(config, splits=None):
    """Runs the sweep of `config` in a new run folder; returns its result (also `sweep.json`)."""
    return RECIPE.execute(config, splits)
