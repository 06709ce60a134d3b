"""The compression recipe's planning options end to end: ``--wavelet auto`` (the per-layer
choice recorded in report.json's plan), compressibility training (the penalty in the loss of
both phases), BatchNorm recalibration of the stored file, and refusal of redundant modes before
any training."""

import inspect
import json

import keras
import numpy as np
import pytest

from dwt_keras.compression import load_compressed
from dwt_keras.compression.bases import AutoBasis, KernelTransform
from dwt_keras.compression.constraints import get_state
from dwt_keras.experiments.compression import (
    CompressionConfig,
    add_penalty,
    compression_basis,
    run_compression,
)
from dwt_keras.experiments.registry import build_model
from dwt_keras.experiments.run import load_data
from dwt_keras.training.batchnorm import recalibrate_batchnorm
from dwt_keras.utils.options import OptionError

TINY = dict(dataset="mnist", model="mlp", mlp_widths=(32, 16), epochs=1, retrain_epochs=1,
            batch_size=64, max_train_samples=384, max_eval_samples=128, latency_repeats=2,
            keep_ratio=0.1, verbose=0, plots=False)


def _run_dir(report):
    return report["run_dir"]


def test_auto_records_the_chosen_basis_and_every_candidate_per_layer(tmp_path, tiny_data_dir):
    report = run_compression(CompressionConfig(wavelet="auto", data_dir=str(tiny_data_dir),
                                               save_dir=str(tmp_path), **TINY))
    on_disk = json.loads(open(f"{_run_dir(report)}/report.json").read())
    plans = {p["layer"]: p for p in on_disk["plan"]}
    assert set(plans) == {"fc1", "fc2"}
    for p in plans.values():
        choice = p["choice"]
        assert choice["criterion"] == "loss"  # the default: validation loss, not energy
        tried = {c["basis"] for c in choice["candidates"]}
        assert {"identity", "dct"} <= tried and p["basis_name"] in tried
    # the chosen plan is the one the stored file compresses with
    assert {l["name"]: l["basis"] for l in on_disk["compressed"]["layers"]} == \
        {n: p["basis_name"] for n, p in plans.items()}


def test_auto_basis_follows_the_criterion_and_the_validation_split():
    x, y = np.zeros((5000, 4), np.float32), np.zeros(5000, np.int64)
    loss = compression_basis(CompressionConfig(wavelet="auto", auto_samples=300), (x, y))
    assert isinstance(loss, AutoBasis) and loss.criterion == "loss"
    assert len(loss.validation_data[0]) == 300
    energy = compression_basis(CompressionConfig(wavelet="auto", auto_criterion="energy"), (x, y))
    assert energy.criterion == "energy" and energy.validation_data is None
    # no validation split: the loss criterion has nothing to score on, energy is used
    assert compression_basis(CompressionConfig(wavelet="auto"), (x[:0], y[:0])).criterion == \
        "energy"
    assert compression_basis(CompressionConfig(wavelet="db2"), (x, y)) == "db2"


def test_penalty_is_in_the_loss_of_dense_training_and_recorded(tmp_path, tiny_data_dir):
    config = CompressionConfig(wavelet="haar", coefficient_l1=1e-3, coefficient_group=1e-3,
                               data_dir=str(tiny_data_dir), save_dir=str(tmp_path), **TINY)
    model = build_model("mlp", (28, 28, 1), 10, widths=(32, 16))
    assert add_penalty(model, CompressionConfig(wavelet="haar")) is None  # strengths 0: off
    assert not model.losses
    block = add_penalty(model, config)
    assert block["layers"] == ["fc1", "fc2"] and block["l1"] == 1e-3
    assert float(keras.ops.sum(model.losses)) > 0
    report = run_compression(config)
    assert report["compressibility_penalty"]["group"] == 1e-3
    # the stored file holds no penalty (the loaded model's variables have no regularizer)
    loaded = load_compressed(report["files"]["compressed_model"])
    assert not loaded.losses


def test_auto_penalises_dct_coefficients_during_dense_training():
    model = build_model("mlp", (28, 28, 1), 10, widths=(32, 16))
    block = add_penalty(model, CompressionConfig(wavelet="auto", coefficient_l1=1e-4))
    assert block["basis_during_dense_training"] == "dct"


def _spy_on_recalibration(monkeypatch):
    """The batches of each BatchNorm recalibration the engine runs (a list per call, as it
    passed them), each recalibration then run on exactly those batches."""
    from dwt_keras.training import batchnorm

    seen = []

    def spy(model, data, batches=None, batch_size=128, layers=None):
        seen.append([np.asarray(x) for x in batchnorm._batches(data, batch_size, batches)])
        return recalibrate_batchnorm(model, seen[-1], layers=layers)

    monkeypatch.setattr(batchnorm, "recalibrate_batchnorm", spy)
    return seen


@pytest.mark.slow
def test_stored_batchnorm_statistics_are_recalibrated_on_augmented_training_batches(
        tmp_path, tiny_data_dir, monkeypatch):
    seen = _spy_on_recalibration(monkeypatch)
    config = CompressionConfig(
        dataset="cifar10_subset", model="resnet20", resnet_width=2, wavelet="dct",
        min_kernel_size=64, epochs=1, retrain_epochs=1, batch_size=64, max_train_samples=256,
        max_eval_samples=64, latency_repeats=2, keep_ratio=0.2, bn_recalibration_batches=3,
        augment="crop_flip", verbose=0, plots=False, data_dir=str(tiny_data_dir),
        save_dir=str(tmp_path))
    report = run_compression(config)
    record = report["compressed"]["batchnorm_recalibration"]
    assert record["batches"] == 3 and record["layers"] == 19
    # the calibration batches are the training pipeline's, augmented as fit() sees them:
    # random crops of the padded images, so (almost) none equals a clean training image
    clean = load_data(config).x_train
    used = np.concatenate(seen[-1])
    assert len(seen[-1]) == 3 and used.shape[1:] == clean.shape[1:]
    equal = [bool(np.any(np.all(np.isclose(clean, img), axis=(1, 2, 3)))) for img in used]
    assert sum(equal) < 0.5 * len(used), sum(equal)
    loaded = load_compressed(report["files"]["compressed_model"])
    dense = keras.saving.load_model(report["files"]["dense_model"], compile=False)
    stored = [l.moving_variance.numpy().copy() for l in loaded.layers
              if isinstance(l, keras.layers.BatchNormalization)]
    # the file's statistics are those of its own weights on those batches: recalibrating the
    # loaded model again on the same batches leaves them unchanged
    recalibrate_batchnorm(loaded, seen[-1])
    again = [l.moving_variance.numpy() for l in loaded.layers
             if isinstance(l, keras.layers.BatchNormalization)]
    for a, b in zip(stored, again):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
    # ... and differ from the dense model's running averages
    dense_vars = [l.moving_variance.numpy() for l in dense.layers
                  if isinstance(l, keras.layers.BatchNormalization)]
    assert any(not np.allclose(a, b, rtol=1e-2) for a, b in zip(stored, dense_vars))


def test_recalibration_sees_the_augmented_training_pipeline(tmp_path, tiny_data_dir,
                                                            monkeypatch):
    seen = _spy_on_recalibration(monkeypatch)
    config = CompressionConfig(wavelet="haar", batch_norm=True, augment="mnist",
                               bn_recalibration_batches=2, data_dir=str(tiny_data_dir),
                               save_dir=str(tmp_path), **TINY)
    report = run_compression(config)
    assert report["compressed"]["batchnorm_recalibration"]["batches"] == 2
    # the batches fit() trains on (rotated, shifted, noisy): none is a clean training image
    clean = load_data(config).x_train
    used = np.concatenate(seen[-1])
    assert used.shape == (2 * TINY["batch_size"],) + clean.shape[1:]
    assert not any(np.any(np.all(np.isclose(clean, img, atol=1e-4), axis=(1, 2, 3)))
                   for img in used)


def test_models_without_batchnorm_skip_recalibration(tmp_path, tiny_data_dir):
    report = run_compression(CompressionConfig(wavelet="haar", data_dir=str(tiny_data_dir),
                                               save_dir=str(tmp_path), **TINY))
    assert report["compressed"]["batchnorm_recalibration"] is None


@pytest.mark.parametrize("wavelet, mode", [("db2", "symmetric"), ("sym4", "zero")])
def test_redundant_modes_are_refused_before_training(wavelet, mode):
    with pytest.raises(OptionError) as e:
        CompressionConfig(wavelet=wavelet, mode=mode).validate()
    assert e.value.option == "mode" and "periodization" in str(e.value)
    CompressionConfig(wavelet="haar", mode="symmetric").validate()  # 2 taps: exact


def test_fallback_defaults_to_the_dct_over_the_taps_never_across_channels():
    config = CompressionConfig(model="lenet5").validate()
    assert config.small_kernel_fallback == "dct"
    from dwt_keras.compression.bases import plan_model

    plans = plan_model(build_model("lenet5", (28, 28, 1), 10), config.wavelet,
                       small_kernel_fallback=config.small_kernel_fallback, warn=False)
    conv = {p.layer: p for p in plans}
    assert conv["conv2"].basis == "dct" and conv["conv2"].view == "conv_spatial"


def test_the_compression_basis_is_not_passed_to_the_w_msa_tokenizer():
    # `wavelet` is the basis in the compression config (here "auto"); W-MSA's tokenizer keeps
    # its own wavelet instead of receiving the basis (which is not a wavelet at all).
    from dwt_keras.experiments.registry import model_options
    from dwt_keras.transformer.models import WaveletTransformer

    config = CompressionConfig(model="wmsa", wavelet="auto")
    assert "wavelet" not in model_options("wmsa", config)
    model = build_model("wmsa", (32, 32, 3), 10, options=config)
    default = inspect.signature(WaveletTransformer.__init__).parameters["wavelet"].default
    assert model.get_config()["wavelet"] == default
    # the transformer app's config, where `wavelet` is the tokenizer's, still passes it
    from dwt_keras.experiments.transformer import TransformerConfig

    assert model_options("wmsa", TransformerConfig(wavelet="haar"))["wavelet"] == "haar"


def test_a_vit_s_block_kernels_are_compressed_stored_and_reloaded(tmp_path, tiny_data_dir):
    # The kernels of a transformer block are attributes of a custom layer (and their names
    # repeat in every block): they are planned by path, compressed, stored and reloaded.
    def small_vit(config, info):
        return build_model("vit", tuple(info["image_shape"]), info["num_classes"],
                           model_size="custom", embed_dim=32, depth=2, num_heads=2,
                           patch_size=8)

    report = run_compression(CompressionConfig(
        dataset="cifar10_subset", data_dir=str(tiny_data_dir), model_fn=small_vit,
        max_train_samples=128, max_eval_samples=64, latency_repeats=1, epochs=1,
        retrain_epochs=1, keep_ratio=0.2, batch_size=32, wavelet="dct", min_kernel_size=256,
        save_dir=str(tmp_path), plots=False, verbose=0))
    layers = [p["layer"] for p in report["plan"]]
    for block in ("block_0", "block_1"):
        for sub in ("attn/qkv", "attn/proj", "fc1", "fc2"):
            assert f"{block}/{sub}" in layers
    dense = {d["layer"]: d for d in report["dense_layers"]}
    assert "planned by path" in dense["block_0"]["reason"]
    loaded = load_compressed(report["files"]["compressed_model"])
    state = get_state(loaded)
    key = "block_1/attn/qkv"
    mask = state.mask_arrays()[key]
    coefficients = np.asarray(KernelTransform(state.plans[key]).forward(
        loaded.blocks[1].attn.qkv.kernel.numpy()))
    # the reloaded block's kernel is its own stored coefficients (not its twin's in block_0)
    assert 0 < mask.sum() < 0.5 * mask.size
    assert np.abs(coefficients[~mask]).max() < 1e-5
    assert state.layers[key] is loaded.blocks[1].attn.qkv
