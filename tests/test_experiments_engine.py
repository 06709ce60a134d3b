"""The experiment engine (dwt_keras.experiments.run / recipe / members / options): the steps every
recipe shares, tested once here.

* settings: declared once (help, choices, bounds), errors that name the argument;
* data: one meaning of the sample limits;
* the run folder: status.json through running / interrupted / failed / done, never mistaken for
  a finished run, a full disk reported with the folder;
* selection: the phase's weights are the best validation epoch's (early stopping, restore),
  never the test split's;
* folds and ensembles for every recipe (a fast stand-in recipe, so the orchestration is what is
  tested): folds from the training split only, one parent folder, seeds seed + i, test-split
  evaluation of the logit-averaged ensemble, bytes summed over the members.
"""

import dataclasses
import errno
import json
import pathlib

import keras
import numpy as np
import pytest

from dwt_keras.compression import compress_model, save_compressed
from dwt_keras.experiments import run as engine
from dwt_keras.experiments.compression import CompressionConfig, CompressionRecipe
from dwt_keras.experiments.options import RunOptions, TrainingOptions, validate_common
from dwt_keras.experiments.run import Environment, Run, Selection, load_data, run_state
from dwt_keras.models import mlp
from dwt_keras.utils.options import OptionError, field_metadata, option, validate_options


# --------------------------------------------------------------------------------------------
# Settings declared once


def test_a_recipe_that_changes_a_default_inherits_help_and_bounds():
    from dwt_keras.experiments.transformer import TransformerConfig

    meta = field_metadata(TransformerConfig, "epochs")
    assert meta["help"] == field_metadata(TrainingOptions, "epochs")["help"] == "Training epochs."
    assert meta["minimum"] == 0 and TransformerConfig().epochs == 100
    with pytest.raises(OptionError, match=r"`epochs` must be >= 0. Received: epochs=-1") as e:
        validate_options(TransformerConfig(epochs=-1))
    assert e.value.option == "epochs"


@pytest.mark.parametrize("kw,name,match", [
    (dict(optimizer="lamb"), "optimizer", "must be one of adam, adamw, sgd, rmsprop, adadelta"),
    (dict(batch_size=0), "batch_size", r"`batch_size` must be >= 1. Received: batch_size=0"),
    (dict(epochs=2.5), "epochs", r"`epochs` must be an integer. Received: epochs=2.5"),
    (dict(lr=0.0), "lr", r"`lr` must be > 0.0"),
    (dict(cv_folds=1), "cv_folds", "must be 0 .off. or >= 2"),
    (dict(cv_folds=2, ensemble=2), "cv_folds", "cannot be combined"),
    (dict(freeze=True), "freeze", "needs `init_from`"),
    (dict(weight_decay=0.1), "weight_decay", "needs optimizer='adamw'"),
    (dict(lr_decay=0.5, lr_schedule="cosine"), "lr_decay", "two schedules"),
    (dict(augment="crop_flip,blur"), "augment", "blur"),
    (dict(augment="mnist,cifar"), "augment", "at most one"),
    (dict(strategy="horovod"), "strategy", "default, mirrored"),
])
def test_shared_settings_are_checked_by_name(kw, name, match):
    @dataclasses.dataclass
    class Config(TrainingOptions, RunOptions):
        pass

    with pytest.raises(OptionError, match=match) as e:
        validate_common(Config(**kw))
    assert e.value.option == name


def test_option_metadata_merges_along_the_class_hierarchy():
    @dataclasses.dataclass
    class Base:
        level: int = option(None, "Level (None: auto).", minimum=1, kind="integer")

    @dataclasses.dataclass
    class Child(Base):
        level: int = option(2)

    meta = field_metadata(Child, "level")
    assert meta["help"] == "Level (None: auto)." and meta["minimum"] == 1
    assert meta["allow_none"] is True  # still a valid value of the base's declaration
    validate_options(Child(level=None))
    with pytest.raises(OptionError, match="`level` must be >= 1"):
        validate_options(Child(level=0))


# --------------------------------------------------------------------------------------------
# Data


def test_sample_limits_mean_the_first_n_of_each_split(tiny_data_dir):
    config = CompressionConfig(data_dir=str(tiny_data_dir), max_train_samples=100,
                               max_eval_samples=30)
    full = load_data(CompressionConfig(data_dir=str(tiny_data_dir)))
    part = load_data(config)
    assert len(part.x_train) == 100 and len(part.x_val) == 30 and len(part.x_test) == 30
    np.testing.assert_array_equal(part.x_train, full.x_train[:100])
    np.testing.assert_array_equal(part.x_val, full.x_val[:30])
    np.testing.assert_array_equal(part.x_test, full.x_test[:30])
    assert part.info["n_train"] == 100 and part.info["subset_test"]
    # 0 means all, as the flags' help says
    assert len(load_data(dataclasses.replace(config, max_train_samples=0)).x_train) == \
        len(full.x_train)


def test_unknown_dataset_is_one_clear_error(tiny_data_dir):
    with pytest.raises(OptionError, match="Dataset 'nosuch' is not available") as e:
        load_data(CompressionConfig(dataset="nosuch", data_dir=str(tiny_data_dir)))
    assert e.value.option == "dataset" and "\n" not in str(e.value)


# --------------------------------------------------------------------------------------------
# The run folder and its status


def _run(tmp_path, **kw):
    config = CompressionConfig(save_dir=str(tmp_path), verbose=0, **kw)
    return config, Environment(config)


def test_status_says_running_then_done_and_interrupted_on_ctrl_c(tmp_path, capsys):
    config, env = _run(tmp_path)
    with env:
        run = Run.new(config, env, "probe")
        with run:
            assert json.loads((run.dir / "status.json").read_text())["state"] == "running"
            run.set_phase("dense training")
            assert run_state(run.dir) == "running"
        assert run_state(run.dir) == "done"
        second = Run.new(config, env, "probe")
        with pytest.raises(KeyboardInterrupt):
            with second:
                second.set_phase("retraining")
                raise KeyboardInterrupt
    status = json.loads((second.dir / "status.json").read_text())
    assert status["state"] == "interrupted" and status["phase"] == "retraining"
    err = capsys.readouterr().err
    assert f"Interrupted during retraining: the partial run is in {second.dir}" in err
    assert not engine.is_finished(second.dir)


def test_a_failed_run_records_the_error_and_a_killed_one_reads_interrupted(tmp_path):
    config, env = _run(tmp_path)
    with env:
        run = Run.new(config, env, "probe")
        with pytest.raises(RuntimeError, match="boom"):
            with run:
                raise RuntimeError("boom")
    status = json.loads((run.dir / "status.json").read_text())
    assert status["state"] == "failed" and status["error"] == "RuntimeError: boom"
    # A process killed while running (SIGKILL) leaves "running" with its pid: a reader on the
    # same host sees that the process is gone.
    status.update(state="running", pid=2 ** 22 + 12345)
    (run.dir / "status.json").write_text(json.dumps(status))
    assert run_state(run.dir) == "interrupted"
    # Folders from before status.json: finished when they hold a report.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    assert run_state(legacy) is None
    (legacy / "report.json").write_text("{}")
    assert engine.is_finished(legacy)


def test_full_disk_names_the_folder_and_keeps_the_report(tmp_path, monkeypatch):
    config, env = _run(tmp_path)
    with env:
        run = Run.new(config, env, "probe")
        run.write_report({"dense": {"test_accuracy": 0.9}})
        original = engine.atomic_write_json

        def full(path, obj, indent=2):
            if pathlib.Path(path).name == "report.json":
                raise OSError(errno.ENOSPC, "No space left on device")
            return original(path, obj, indent)

        monkeypatch.setattr(engine, "atomic_write_json", full)
        with pytest.raises(OSError, match=f"No space left on the device for report.json in "
                                          f"{run.dir}.*bytes are free"):
            run.write_report({"dense": {"test_accuracy": 0.9}, "compressed": {}})
    monkeypatch.undo()
    assert json.loads((run.dir / "report.json").read_text()) == {
        "dense": {"test_accuracy": 0.9}, "run_dir": str(run.dir)}


# --------------------------------------------------------------------------------------------
# Selection on the validation split


class _Scripted(keras.callbacks.Callback):
    """Overwrites the validation loss with a script, and marks each epoch's weights."""

    def __init__(self, losses):
        super().__init__()
        self.losses = losses

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.losses[epoch]
        self.model.layers[-1].bias.assign(np.full(self.model.layers[-1].bias.shape, epoch,
                                                  np.float32))


@pytest.mark.parametrize("restore,patience,expect_epoch,expect_bias,epochs_run", [
    ("best_if_stopping", 0, None, 4, 5),   # no early stopping: the last weights
    ("best_if_stopping", 1, 2, 1, 3),      # stops after epoch 3, restores epoch 2
    ("best", 0, 4, 3, 5),                  # no stopping, but the best epoch is selected
])
def test_selection_restores_the_best_validation_epoch(tmp_path, restore, patience, expect_epoch,
                                                      expect_bias, epochs_run):
    config, env = _run(tmp_path, batch_size=8)
    x = np.random.default_rng(0).random((16, 4), dtype=np.float32)
    y = np.arange(16) % 2
    with env:
        run = Run(config, tmp_path, env, track=False)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        run.compile(model, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    ["accuracy"], 2, 5)
        script = _Scripted([0.9, 0.5, 0.7, 0.4, 0.6])
        result = run.fit(model, (x, y), (x, y), 5, "train",
                         Selection("val_loss", "min", patience=patience, restore=restore),
                         callbacks=[script])
    assert result.epochs_run == epochs_run and result.best_epoch == expect_epoch
    assert float(model.layers[-1].bias.numpy()[0]) == expect_bias


# --------------------------------------------------------------------------------------------
# Folds and ensembles: one implementation for every recipe


class _FastRecipe(CompressionRecipe):
    """The compression recipe with its phases replaced by a quick stand-in that writes a real
    compressed file and a report in the recipe's layout."""

    def __init__(self, calls):
        self.calls = calls

    def prepare(self, config, splits, environment):
        return None

    def train(self, run, splits, prepared):
        c = run.config
        self.calls.append((c, splits, run.dir))
        model = mlp(splits.x_train.shape[1:], 10, widths=(16,))
        compress_model(model, keep_ratio=0.5, basis="haar", min_kernel_size=64)
        path = run.dir / "compressed_model.dwtc"
        save_compressed(model, path)
        test = run.evaluate(model, splits)
        block = {"test_accuracy": test["accuracy"], "test_loss": test["test_loss"],
                 "f1_macro": test["f1_macro"],
                 "compression_ratio": 4 * model.count_params() / path.stat().st_size,
                 "bytes_compressed_file": path.stat().st_size,
                 "bytes_float32": 4 * model.count_params()}
        return {"compressed": block, "dense": dict(block),
                "files": {"compressed_model": str(path), "report": str(run.dir / "report.json")}}


def _config(tmp_path, data_dir, **kw):
    return CompressionConfig(dataset="mnist", data_dir=str(data_dir), max_train_samples=300,
                             max_eval_samples=100, save_dir=str(tmp_path), seed=3, verbose=0,
                             **kw)


def test_cross_validation_runs_folds_of_the_training_split(tmp_path, tiny_data_dir):
    calls = []
    out = _FastRecipe(calls).execute(_config(tmp_path, tiny_data_dir, cv_folds=3))
    (parent,) = list(tmp_path.iterdir())          # exactly one new folder under save_dir
    assert json.loads((parent / "cv_report.json").read_text())["cv_folds"] == 3
    assert engine.is_finished(parent)
    assert [c[2].parent for c in calls] == [parent] * 3
    assert [c[2].name.split("-")[0] for c in calls] == ["fold0", "fold1", "fold2"]
    assert [c[0].seed for c in calls] == [3, 4, 5]
    n_pool = len(calls[0][1].x_train) + len(calls[0][1].x_val)
    splits = load_data(_config(tmp_path, tiny_data_dir))
    assert n_pool == len(splits.x_train) + len(splits.x_val)  # training + validation parts
    for _, fs, _ in calls:
        np.testing.assert_array_equal(fs.x_test, splits.x_test)  # the test split, untouched
    acc = out["summary"]["test_accuracy"]
    assert acc["mean"] == pytest.approx(np.mean([f["test_accuracy"] for f in out["folds"]]))
    assert acc["std"] == pytest.approx(np.std([f["test_accuracy"] for f in out["folds"]], ddof=1))
    assert all(f["n_train"] + f["n_val"] == n_pool for f in out["folds"])


def test_ensemble_averages_members_and_sums_bytes(tmp_path, tiny_data_dir):
    from dwt_keras.compression import load_compressed

    calls = []
    out = _FastRecipe(calls).execute(_config(tmp_path, tiny_data_dir, ensemble=2))
    assert [c[0].seed for c in calls] == [3, 4]
    files = [pathlib.Path(m["file"]) for m in out["bytes"]["members"]]
    assert out["bytes"]["bytes_total"] == sum(f.stat().st_size for f in files)
    assert out["compression_ratio"] == pytest.approx(
        2 * out["members"][0]["bytes_compressed_file"] * out["members"][0]["compression_ratio"]
        / out["bytes"]["bytes_total"])
    assert out["evaluated_on"] == "test" and out["test"]["n"] == 100
    splits = load_data(_config(tmp_path, tiny_data_dir))
    logits = np.mean([load_compressed(f).predict(splits.x_test, verbose=0) for f in files], 0)
    assert out["test"]["accuracy"] == pytest.approx(
        float(np.mean(logits.argmax(-1) == splits.y_test)))
    saved = keras.saving.load_model(out["ensemble_file"]["path"])
    np.testing.assert_allclose(saved.predict(splits.x_test[:8], verbose=0), logits[:8],
                               atol=1e-5)
    with pytest.raises(ValueError, match="ensemble"):
        _FastRecipe([]).execute(_config(tmp_path, tiny_data_dir, ensemble=0))


# --------------------------------------------------------------------------------------------
# Every flag file of configs/ still parses into a valid config


CONFIG_APPS = {
    "mnist_": ("compression", "CompressionConfig"), "cifar10_": ("compression",
                                                                "CompressionConfig"),
    "learnable_": ("learnable", "LearnableConfig"), "spectral_study": ("spectral_study",
                                                                      "StudyConfig"),
    "tune_": ("tuning", "SearchConfig"), "vit_": ("transformer", "TransformerConfig"),
    "wmsa_": ("transformer", "TransformerConfig"),
}


@pytest.mark.parametrize("path", sorted((pathlib.Path(__file__).parents[1] / "configs")
                                        .glob("*.cfg")), ids=lambda p: p.name)
def test_every_config_file_parses_and_validates(path):
    import importlib

    from absl import flags

    from dwt_keras import cli

    module, name = next(v for k, v in CONFIG_APPS.items() if path.name.startswith(k))
    package = "dwt_keras.tuning.search" if module == "tuning" else f"dwt_keras.experiments.{module}"
    config_class = getattr(importlib.import_module(package), name)
    fv = flags.FlagValues()
    cli.define_flags(config_class, flag_values=fv)
    fv(["prog", f"--flagfile={path}"])
    config = cli.config_from_flags(config_class, flag_values=fv)
    if config.init_from:  # the file refers to a run made earlier; not checked here
        config = dataclasses.replace(config, init_from=None, freeze=False)
    config.validate()  # (an unknown flag in the file would have failed the parse above)


def test_every_module_that_registers_a_serializable_is_imported_before_init_from():
    root = pathlib.Path(engine.__file__).resolve().parents[1]
    registering = sorted(
        "dwt_keras." + ".".join(p.relative_to(root).with_suffix("").parts)
        for p in root.rglob("*.py") if "register_keras_serializable(" in p.read_text())
    assert registering == sorted(engine.SERIALIZABLE_MODULES)


def test_a_fresh_process_starts_from_a_transformer_file(tmp_path):
    import os
    import subprocess
    import sys

    from dwt_keras.experiments.registry import build_model

    path = tmp_path / "vit.keras"
    build_model("vit", (32, 32, 3), 10, model_size="tiny", patch_size=8).save(path)
    load = ("import keras; from dwt_keras.experiments import run; {}"
            f"keras.saving.load_model({str(path)!r}, compile=False); print('loaded')")

    def fresh(code):
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})

    bare = fresh(load.format(""))
    assert "Could not locate class 'ViT'" in bare.stderr  # what --init_from hit
    registered = fresh(load.format("run.register_serializables(); "))
    assert registered.returncode == 0 and "loaded" in registered.stdout, registered.stderr[-2000:]
