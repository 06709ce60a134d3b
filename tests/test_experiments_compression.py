"""The compression recipe (apps/DWT_model.py): one run folder, the report schema, the reloaded
file's metrics, the shared training extras through it, and bad input."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

from dwt_keras.compression import load_compressed
from dwt_keras.experiments.compression import CompressionConfig
from dwt_keras.experiments.compression import run_compression as run_compression_experiment
from dwt_keras.compression.report import validate_report

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(dataset="mnist", model="mlp", mlp_widths=(32, 16), epochs=1, retrain_epochs=1,
            batch_size=64, max_train_samples=384, max_eval_samples=128, latency_repeats=3,
            keep_ratio=0.1, verbose=0)


def test_pipeline_writes_one_run_folder_with_report_and_files(tmp_path, tiny_data_env):
    report = run_compression_experiment(CompressionConfig(
        wavelet="haar", schedule="gradual", quantize="kmeans", quant_bits=5,
        save_dir=str(tmp_path), log_dir=str(tmp_path / "tb"), **TINY))
    runs = [p for p in tmp_path.iterdir() if p.name != "tb"]
    assert len(runs) == 1
    run = runs[0]
    on_disk = json.loads((run / "report.json").read_text())
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    validate_report(on_disk)
    for name in ("dense_model.keras", "compressed_model.dwtc", "training_curves.png",
                 "layer_sparsity.png", "receptive_fields.png"):
        assert (run / name).is_file(), name
    d, c = on_disk["dense"], on_disk["compressed"]
    assert on_disk["dataset"]["n_test"] == 128 and c["n_test_evaluated"] == 128
    assert d["bytes_float32"] == 4 * (784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10)
    assert c["bytes_compressed_file"] == (run / "compressed_model.dwtc").stat().st_size
    assert c["compression_ratio"] == pytest.approx(d["bytes_float32"] / c["bytes_compressed_file"])
    assert c["coefficient_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert [l["name"] for l in c["layers"]] == ["fc1", "fc2"]  # logits (160 weights) stay dense
    assert c["layers"][0]["view"] == "receptive_field_hw"
    assert c["mask_hold"]["projection_error"] < 1e-5
    # the reported compressed accuracy is the reloaded file's, on the test split
    m = load_compressed(run / "compressed_model.dwtc")
    from dwt_keras.data import load_arrays

    s = load_arrays("mnist")
    acc = float(np.mean(np.argmax(m.predict(s.x_test[:128], verbose=0), -1) == s.y_test[:128]))
    assert acc == pytest.approx(c["test_accuracy"])
    # TensorBoard: per-layer sparsity and the ratio per epoch
    tb_files = list((tmp_path / "tb").rglob("events.out.tfevents*"))
    assert any("compression" in str(p) for p in tb_files)
    assert "compression_ratio" in on_disk["history"]["retrain"]


@pytest.mark.parametrize("override, match", [
    ({"wavelet": "morl"}, "continuous"),
    ({"wavelet": "db99"}, "Unknown"),
    ({"mode": "wrap"}, "mode"),
    ({"keep_ratio": 0.0}, "keep_ratio"),
    ({"keep_ratio": 1.5}, "keep_ratio"),
    ({"model": "vgg"}, "lenet300"),
    ({"layer_overrides": {"no_such_layer": {"level": 1}}}, "no_such_layer"),
    ({"schedule": "cosine"}, "oneshot"),
    ({"dataset": "no_such_dataset"}, "no_such_dataset"),
])
def test_bad_input_fails_before_training(tmp_path, override, match, tiny_data_env, monkeypatch):
    import keras

    def no_fit(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(keras.Model, "fit", no_fit)
    with pytest.raises(ValueError, match=match):
        run_compression_experiment(CompressionConfig(**{**TINY, "save_dir": str(tmp_path),
                                                        **override}))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_save_dir_fails_before_training(tmp_path, monkeypatch):
    import keras

    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="Cannot write"):
        run_compression_experiment(CompressionConfig(**{**TINY, "save_dir": str(blocker / "x")}))


def _run_app(args, env_extra=None, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})}
    return subprocess.run([sys.executable, str(ROOT / "apps" / "DWT_model.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_app_with_flagfile_and_env_data_dir(tmp_path, tiny_data_dir):
    save = tmp_path / "SavedModels"
    (save / "earlier-run").mkdir(parents=True)
    r = _run_app(["--flagfile=configs/mnist_mlp_tiny.cfg", "--wavelet", "haar", "--batch_size",
                  "32", "--epochs", "1", "--save_dir", str(save), "--latency_batch_size", "16",
                  "--verbose", "1"],
                 env_extra={"DWT_KERAS_DATA_DIR": str(tiny_data_dir)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    runs = sorted(p.name for p in save.iterdir())
    assert len(runs) == 2 and "earlier-run" in runs  # exactly one new folder, the old one kept
    run = save / [n for n in runs if n != "earlier-run"][0]
    report = json.loads((run / "report.json").read_text())
    validate_report(report)
    assert report["wavelet"] == "haar" and report["dataset"]["source"].endswith("mnist.npz")
    assert report["dense"]["latency_batch_size"] == 16
    assert "test accuracy" in r.stdout and "compression ratio" in r.stdout
    assert "receptive_field_hw" in r.stdout  # the per-layer plan is printed


def test_app_rejects_bad_wavelet_before_training(tmp_path):
    r = _run_app(["--wavelet", "morl", "--save_dir", str(tmp_path / "out")], timeout=300)
    assert r.returncode != 0
    assert "continuous" in (r.stdout + r.stderr)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


PIPELINE = dict(TINY, max_train_samples=256, schedule="oneshot", quantize="none", plots=False)


def _tags(path):
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(path), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


@pytest.mark.slow
def test_pipeline_with_extras_tensorboard_saliency_export(tmp_path, tiny_data_env):
    report = run_compression_experiment(CompressionConfig(
        **PIPELINE, save_dir=str(tmp_path / "runs"), log_dir=str(tmp_path / "tb"),
        lr_schedule="cosine", augment="mnist", dropout=0.1, l2=1e-4, saliency_images=2,
        export="tflite"))
    run = pathlib.Path(report["run_dir"])
    extras = report["training_extras"]
    assert extras["options"]["lr_schedule"] == "cosine" and extras["options"]["augment"] == "mnist"
    assert report["distribution"]["num_replicas_in_sync"] == 1
    # saliency maps of the final model, as PNG files in the run folder
    assert len(report["files"]["saliency"]) == 2
    for f in report["files"]["saliency"]:
        assert pathlib.Path(f).read_bytes()[:4] == b"\x89PNG" and str(run) in f
    # export of the decompressed model: size of what was written, outputs that match
    exp = extras["export"]
    assert exp["bytes"] == (run / "model.tflite").stat().st_size
    assert exp["max_abs_diff_vs_keras"] < 1e-4 and exp["latency_ms_per_sample"] > 0
    # regularisation reached the stored model: a dropout layer after each hidden Dense layer
    stored = load_compressed(run / "compressed_model.dwtc")
    names = [l.name for l in stored.layers]
    assert "fc1_dropout" in names and "fc2_dropout" in names and "logits_dropout" not in names
    assert report["compressed"]["mask_hold"]["projection_error"] < 1e-5
    # TensorBoard: the shared set in both phases
    retrain = _tags(tmp_path / "tb" / run.name / "retrain" / "train")
    tags = set(retrain.Tags()["tensors"])
    assert {"epoch_compression_ratio", "coefficient_sparsity/fc1", "coefficient_sparsity/overall",
            "receptive_fields", "receptive_fields/at_train_begin", "coefficient_maps",
            "coefficients/fc1", "epoch_learning_rate"} <= tags
    dense = _tags(tmp_path / "tb" / run.name / "dense" / "train")
    lr_end = float(np.asarray(__import__("tensorflow").make_ndarray(
        dense.Tensors("epoch_learning_rate")[-1].tensor_proto)))
    assert lr_end == pytest.approx(1e-3 * 0.01, rel=1e-4)   # cosine down to 1% of --lr
    sparsity = retrain.Tensors("coefficient_sparsity/overall")[-1]
    assert float(__import__("tensorflow").make_ndarray(sparsity.tensor_proto)) == \
        pytest.approx(report["compressed"]["coefficient_sparsity"], abs=1e-6)


@pytest.mark.slow
def test_pipeline_init_from_compressed_file(tmp_path, tiny_data_env):
    first = run_compression_experiment(CompressionConfig(**PIPELINE, save_dir=str(tmp_path / "a")))
    second = run_compression_experiment(CompressionConfig(
        **{**PIPELINE, "epochs": 0}, save_dir=str(tmp_path / "b"),
        init_from=first["files"]["compressed_model"]))
    info = second["training_extras"]["transfer"]
    assert info["init_from"] == first["files"]["compressed_model"]
    assert not info["head_replaced"]
    # no dense training: the dense model evaluated is the loaded compressed model
    assert second["dense"]["test_accuracy"] == pytest.approx(first["compressed"]["test_accuracy"])


def _app(argv, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "apps/DWT_model.py", "--save_dir", str(tmp_path),
                           *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv,match", [
    (["--cv_folds", "1"], "error: --cv_folds must be 0 (off) or >= 2"),
    (["--ensemble", "0", "--init_from", "/no/such.keras"], "error: --ensemble must be >= 1"),
    (["--dataset", "nosuch"], "error: Dataset 'nosuch' is not available"),
])
def test_app_rejects_bad_training_flags(tmp_path, argv, match):
    proc = _app(argv, tmp_path)
    assert proc.returncode == 2 and match in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Try --helpfull" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_operating_point_is_the_smallest_file_within_the_validation_bar(tmp_path,
                                                                            tiny_data_dir):
    from dwt_keras.compression import get_state

    config = CompressionConfig(
        dataset="mnist", data_dir=str(tiny_data_dir), model="mlp", mlp_widths=(32,), epochs=2,
        retrain_epochs=1, batch_size=64, max_train_samples=512, max_eval_samples=200,
        latency_repeats=2, keep_ratio=0.2, stage_factor=0.5, stage_epochs=1,
        min_keep_ratio=0.02, plots=False, verbose=0, save_dir=str(tmp_path))
    with warnings.catch_warnings():
        # a 100-point bar is outside the noise: no warning
        warnings.filterwarnings("error", message=".*inside the noise")
        loose = run_compression_experiment(dataclasses.replace(config, max_accuracy_drop=100.0))
    op = loose["operating_point"]
    assert op["val_standard_error_points"] == pytest.approx(50 / op["val_images"] ** 0.5)
    stages = op["stages"]
    # a bar no stage can miss: the walk goes down to min_keep_ratio, halving the keep ratio
    assert [s["keep_ratio"] for s in stages] == pytest.approx([0.2, 0.1, 0.05, 0.025])
    assert all(s["within_bar"] for s in stages) and op["met"]
    kept = [s["kept_coefficients"] for s in stages]
    assert kept == sorted(kept, reverse=True) and len(set(kept)) == len(kept)  # nested masks
    smallest = min(stages, key=lambda s: s["bytes_compressed_file"])
    assert op["chosen_stage"] == smallest["stage"] and loose["keep_ratio"] == smallest["keep_ratio"]
    # the stored file is the chosen stage's model, scored on the test split
    assert loose["compressed"]["bytes_compressed_file"] == smallest["bytes_compressed_file"]
    assert op["val_accuracy_bar"] == pytest.approx(loose["dense"]["val_accuracy"] - 1.0)
    stored = load_compressed(loose["files"]["compressed_model"])
    assert sum(int(m.sum()) for m in get_state(stored).mask_arrays().values()) == \
        smallest["kept_coefficients"]

    # a 0-point bar on ~50 validation images: warned before training
    with pytest.warns(UserWarning, match="inside the noise of the validation split"):
        strict = run_compression_experiment(dataclasses.replace(config, max_accuracy_drop=0.0))
    op = strict["operating_point"]
    # the walk stops at the first stage below the bar; the choice is always within it
    assert all(s["within_bar"] for s in op["stages"][:-1])
    if op["met"]:
        chosen = op["stages"][op["chosen_stage"]]
        assert chosen["val_accuracy"] >= op["val_accuracy_bar"] - 1e-12
    else:
        assert op["chosen_stage"] == 0 and len(op["stages"]) == 1


def test_a_bar_inside_the_validation_noise_is_named_with_the_split_that_resolves_it():
    from dwt_keras.experiments.compression import validation_noise_warning

    # the CIFAR-10 subset's 400 validation images cannot resolve the recipe's 1-point bar
    message = validation_noise_warning(1.0, 400)
    assert "400 images" in message and "2.5 points" in message
    assert "2,500 validation images" in message
    assert validation_noise_warning(2.5, 400) is None        # exactly one standard error
    assert validation_noise_warning(1.0, 10_000) is None     # 0.5 points
    assert "--validation_split" in validation_noise_warning(0.0, 400)


def test_the_walk_restarts_a_decaying_schedule_and_records_a_curve_past_the_bar(
        tmp_path, tiny_data_dir):
    config = CompressionConfig(
        dataset="mnist", data_dir=str(tiny_data_dir), model="mlp", mlp_widths=(32,), epochs=2,
        retrain_epochs=1, batch_size=64, max_train_samples=512, max_eval_samples=200,
        latency_repeats=2, keep_ratio=0.05, stage_factor=0.3, stage_epochs=2,
        min_keep_ratio=0.0005, max_accuracy_drop=0.0, stages_past_bar=1,
        lr_schedule="warmup_cosine", plots=False, verbose=0, save_dir=str(tmp_path))
    report = run_compression_experiment(config)
    op = report["operating_point"]
    stages = op["stages"]
    # warmup_cosine ends the retraining at a rate of 0: each stage restarts it, so the stages
    # retrain (the rate at the end of a stage's first epoch is mid-cosine, not 0)
    assert op["schedule_restarted_per_stage"]
    for s in stages[1:]:
        assert len(s["learning_rate"]) == 2 and s["learning_rate"][0] > 0.1 * config.lr
    # ~100 of 25,450 coefficients cannot hold the dense accuracy: the walk misses the bar ...
    misses = [s["stage"] for s in stages if not s["within_bar"]]
    assert misses, stages
    first_miss = misses[0]
    # ... walks exactly one stage past it (unless min_keep_ratio ends it) and never chooses one
    assert len(stages) == first_miss + 2 or \
        stages[-1]["keep_ratio"] * config.stage_factor < config.min_keep_ratio
    assert [s["past_bar"] for s in stages] == [s["stage"] > first_miss for s in stages]
    assert op["chosen_stage"] < first_miss if op["met"] else op["chosen_stage"] == 0
    chosen = stages[op["chosen_stage"]]
    # the stored file is the chosen stage's (the model was restored from the later stages)
    assert report["compressed"]["bytes_compressed_file"] == chosen["bytes_compressed_file"]
    assert report["compressed"]["test_accuracy"] == pytest.approx(chosen["test_accuracy"])
    kept = [s["kept_coefficients"] for s in stages]
    assert kept == sorted(kept, reverse=True)
    # a constant rate continues the retraining's optimizer
    assert not run_compression_experiment(dataclasses.replace(
        config, lr_schedule="constant", stages_past_bar=0, max_accuracy_drop=100.0,
        min_keep_ratio=0.01))["operating_point"]["schedule_restarted_per_stage"]


@pytest.mark.slow
def test_serving_forms_litert_export_and_coefficient_domain_retraining(tmp_path, tiny_data_dir):
    from dwt_keras.compression.litert import evaluate_litert

    report = run_compression_experiment(CompressionConfig(
        dataset="mnist", data_dir=str(tiny_data_dir), model="lenet300", epochs=1,
        retrain_epochs=2, batch_size=64, max_train_samples=512, max_eval_samples=200,
        latency_repeats=2, keep_ratio=0.05, wavelet="haar", plots=False, verbose=0,
        export="litert", serve_form="coefficient", retrain_in="coefficient",
        save_dir=str(tmp_path)))
    run = pathlib.Path(report["run_dir"])
    dep = report["deployment"]
    # the .tflite of the coefficient form, written in the run folder and measured there
    assert (run / "coefficient.tflite").stat().st_size == dep["litert_bytes"]
    assert dep["litert_bytes"] < 0.1 * dep["dense_litert_bytes"]
    assert dep["litert_latency_ms_batch1"] > 0 and dep["dense_litert_latency_ms_batch1"] > 0
    from dwt_keras.data import load_arrays

    s = load_arrays("mnist", data_dir=str(tiny_data_dir))
    lite = evaluate_litert(run / "coefficient.tflite", s.x_test[:200], s.y_test[:200])
    assert lite["accuracy"] == pytest.approx(dep["litert_test_accuracy"])
    forms = dep["forms"]
    assert forms["coefficient"]["weight_bytes"] < 0.2 * forms["dense_form"]["weight_bytes"]
    assert forms["coefficient"]["test_accuracy"] == pytest.approx(
        report["compressed"]["test_accuracy"], abs=0.01)
    # retraining after the ramp ran on the kept coefficients, and the masks still hold
    retraining = report["retraining"]
    assert retraining["domain"] == "coefficient" and retraining["ramp_epochs"] >= 1
    assert report["compressed"]["mask_hold"]["projection_error"] < 1e-5
    assert len(report["history"]["retrain"]["loss"]) == report["compressed"]["epochs_trained"]
