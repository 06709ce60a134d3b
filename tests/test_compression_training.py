"""The mask holds exactly through retraining; schedules key on the optimizer; callbacks copy."""

import copy
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from dwt_keras.compression import (GradualCompression, IterativeCompression, OneShotCompression,
                                   compress_model, get_state)
from dwt_keras.compression.constraints import check_finite_weights
from dwt_keras.compression.selection import budget
from dwt_keras.experiments.registry import build_model

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 16, 16, 1), dtype=np.float32)
    y = (x[:, :8].mean(axis=(1, 2, 3)) > x[:, 8:].mean(axis=(1, 2, 3))).astype("int32")
    return x, y


def _model():
    m = build_model("mlp", (16, 16, 1), 2, widths=(32, 16))
    m.compile(keras.optimizers.Adam(1e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


def _assert_moved_on_the_mask(m, state, before, masks_before):
    """Every compressed kernel moved since `before`, under unchanged masks, and stays exactly
    on its mask: nothing outside it, W == B^-1(M * B(W))."""
    for n, t in state.transforms.items():
        w = m.get_layer(n).kernel.numpy()
        assert not np.allclose(w, before[n]), "retraining must move the kernel"
        c = np.asarray(t.forward(w))
        mask = state.mask_arrays()[n]
        np.testing.assert_array_equal(mask, masks_before[n])
        scale = np.abs(w).max()
        assert np.abs(c[~mask]).max() < 1e-5 * scale, n  # nothing outside the mask
        proj = np.asarray(t.inverse(np.where(mask, c, 0).astype(np.float32)))
        np.testing.assert_allclose(proj, w, atol=1e-5 * scale)  # W == B^-1(M * B(W))


@pytest.mark.parametrize("basis", ["haar", "db2", "bior2.2", "dct", "identity"])
def test_mask_holds_exactly_after_fit_steps(basis):
    x, y = _data()
    m = _model()
    state = compress_model(m, keep_ratio=0.2, basis=basis, min_kernel_size=1)
    before = {n: l.kernel.numpy().copy() for n, l in state.layers.items()}
    masks_before = state.mask_arrays()
    m.fit(x, y, epochs=1, batch_size=32, verbose=0)  # 8 optimizer steps
    assert int(m.optimizer.iterations.numpy()) == 8
    _assert_moved_on_the_mask(m, state, before, masks_before)
    kept = sum(v.sum() for v in state.mask_arrays().values())
    total = sum(p.n_coefficients for p in state.plans.values())
    assert kept == budget(0.2, total)


@pytest.mark.parametrize("basis", ["haar", "dct"])
def test_fit_then_compress_then_fit_holds_the_mask(basis):
    # The usual order: train, compress the trained model, retrain. The first fit() traced and
    # cached a train function without the mask constraints; compressing must make the second
    # fit() use a new one, or its steps move the kernels off the mask.
    x, y = _data()
    m = _model()
    m.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert m.train_function is not None          # traced and cached by the first fit
    state = compress_model(m, keep_ratio=0.2, basis=basis, min_kernel_size=1)
    assert state.max_hold_error()["projection_error"] < 1e-5   # pruned: on the mask now
    before = {n: l.kernel.numpy().copy() for n, l in state.layers.items()}
    masks_before = state.mask_arrays()
    m.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert int(m.optimizer.iterations.numpy()) == 16
    _assert_moved_on_the_mask(m, state, before, masks_before)


def test_gradual_schedule_follows_optimizer_step_and_survives_deepcopy():
    x, y = _data()
    m = _model()
    cb = GradualCompression(final_keep=0.1, begin_step=0, end_step=12, frequency=4, basis="haar",
                            min_kernel_size=1, verbose=0)
    with pytest.warns(UserWarning, match="before the ramp's end at step 12"):
        m.fit(x, y, epochs=1, batch_size=32, callbacks=[copy.deepcopy(cb)], verbose=0)  # 8 steps
    state = get_state(m)
    assert state.keep_ratio == pytest.approx(cb.keep_at(8))
    assert 0.1 < state.keep_ratio < 1.0
    # A fresh copy (as KerasTuner makes) continues from the optimizer's step, not from zero.
    m.fit(x, y, epochs=1, batch_size=32, callbacks=[copy.deepcopy(cb)], verbose=0)  # steps 9..16
    assert int(m.optimizer.iterations.numpy()) == 16
    assert state.keep_ratio == pytest.approx(0.1)
    assert state.max_hold_error()["projection_error"] < 1e-5


def _keep_per_epoch():
    keeps = []
    cb = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: keeps.append(get_state(cb.model).keep_ratio))
    return cb, keeps


def _schedule_warnings(record):
    return [str(w.message) for w in record if "Compression ended" in str(w.message)]


@pytest.mark.parametrize("end", [{"end_step": 0.5}, {"end_epoch": 2}])
def test_gradual_end_as_share_of_the_fit_or_epoch(end, recwarn):
    x, y = _data()  # 256 samples, batch 32: 8 steps per epoch
    m = _model()
    m.fit(x, y, epochs=1, batch_size=32, verbose=0)  # an earlier fit: the ramp is this fit's
    cb = GradualCompression(final_keep=0.1, frequency=4, basis="haar", min_kernel_size=1,
                            verbose=0, **end)
    recorder, keeps = _keep_per_epoch()
    m.fit(x, y, epochs=4, batch_size=32, callbacks=[copy.deepcopy(cb), recorder], verbose=0)
    # 32 steps from optimizer step 8: the ramp ends at step 8 + 16, after the second epoch
    assert keeps[0] > 0.1 + 1e-9
    assert keeps[1:] == [pytest.approx(0.1)] * 3
    assert not _schedule_warnings(recwarn)
    assert copy.deepcopy(cb).get_config() == cb.get_config()
    assert cb.resolve_steps(8, 4, origin=8) == (8, 24)


def test_gradual_warns_when_the_fit_ends_before_the_ramp():
    x, y = _data()
    m = _model()
    cb = GradualCompression(final_keep=0.1, end_step=2000, frequency=4, basis="haar",
                            min_kernel_size=1, verbose=0)
    with pytest.warns(UserWarning, match=r"ended at keep 0\.\d+, not final_keep=0\.1.*step 16"):
        m.fit(x, y, epochs=2, batch_size=32, callbacks=[cb], verbose=0)
    assert get_state(m).keep_ratio > 0.9
    with pytest.raises(ValueError, match="steps_per_epoch"):
        GradualCompression(final_keep=0.1, end_step=0.5).resolve_steps(None, 3)
    for bad in ({"end_step": 1.5}, {"end_step": 0.0}, {"end_step": -1}, {"end_epoch": 0},
                {"end_step": 10, "end_epoch": 1}, {"begin_step": 1.0, "end_step": 1.0}):
        with pytest.raises(ValueError, match="Received"):
            GradualCompression(final_keep=0.1, **bad)


def test_iterative_warns_when_the_fit_ends_before_the_last_stage(recwarn):
    x, y = _data()
    m = _model()
    cb = IterativeCompression(keep_ratios=(0.5, 0.2, 0.1), epochs_per_stage=1, basis="haar",
                              min_kernel_size=1, verbose=0)
    with pytest.warns(UserWarning, match="stage 2 of 3 .*keep 0.2, not the final 0.1"):
        m.fit(x, y, epochs=2, batch_size=64, callbacks=[cb], verbose=0)
    recwarn.clear()
    m.fit(x, y, epochs=3, initial_epoch=2, batch_size=64, callbacks=[copy.deepcopy(cb)],
          verbose=0)
    assert get_state(m).keep_ratio == 0.1
    assert not _schedule_warnings(recwarn)


def test_deepcopy_gives_an_independent_callback_with_the_same_config():
    m = _model()
    cb = IterativeCompression(keep_ratios=(0.5, 0.2), epochs_per_stage=1, basis="db2",
                              min_kernel_size=1, verbose=0)
    cb.set_model(m)
    cb2 = copy.deepcopy(cb)
    assert cb2 is not cb and cb2.get_config() == cb.get_config()
    assert getattr(cb2, "_model", None) is None  # the copy does not drag the model along


def test_iterative_stages_by_epoch_and_resume_with_initial_epoch():
    x, y = _data()
    m = _model()
    cb = IterativeCompression(keep_ratios=(0.5, 0.2), epochs_per_stage=1, basis="haar",
                              min_kernel_size=1, verbose=0)
    with pytest.warns(UserWarning, match="stage 1 of 2"):
        m.fit(x, y, epochs=1, batch_size=64, callbacks=[cb], verbose=0)
    assert get_state(m).keep_ratio == 0.5
    m.fit(x, y, epochs=3, initial_epoch=1, batch_size=64, callbacks=[copy.deepcopy(cb)], verbose=0)
    state = get_state(m)
    assert state.keep_ratio == 0.2
    total = sum(p.n_coefficients for p in state.plans.values())
    assert sum(v.sum() for v in state.mask_arrays().values()) == budget(0.2, total)
    assert state.max_hold_error()["outside_mask_max"] < 1e-5


def test_oneshot_after_training_then_retraining_holds():
    x, y = _data()
    m = _model()
    m.fit(x, y, epochs=1, batch_size=64, verbose=0,
          callbacks=[OneShotCompression(keep_ratio=0.1, basis="dct", min_kernel_size=1, verbose=0)])
    state = get_state(m)
    assert state.keep_ratio == 0.1 and state.installed
    m.fit(x, y, epochs=1, batch_size=64, verbose=0)  # plain fit: the constraints still hold
    assert state.max_hold_error()["projection_error"] < 1e-5


def test_callback_arguments_validated_at_construction():
    with pytest.raises(ValueError, match="keep_ratio"):
        OneShotCompression(keep_ratio=1.5)
    with pytest.raises(ValueError, match="continuous"):
        GradualCompression(final_keep=0.1, basis="morl")
    with pytest.raises(ValueError, match="mode"):
        GradualCompression(final_keep=0.1, mode="bogus")
    with pytest.raises(ValueError, match="non-increasing"):
        IterativeCompression(keep_ratios=(0.1, 0.5))


def test_nan_weights_raise_naming_the_layer():
    m = _model()
    k = m.get_layer("fc2").kernel
    k.assign(np.full(k.shape, np.nan, np.float32))
    with pytest.raises(ValueError, match="'fc2'"):
        check_finite_weights(m)
    with pytest.raises(ValueError, match="'fc2'"):
        compress_model(m, keep_ratio=0.5, min_kernel_size=1)


_MIRRORED = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, sys.argv[1])
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from dwt_keras.compression import GradualCompression, get_state
    from dwt_keras.experiments.registry import build_model
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        m = build_model("mlp", (16, 16, 1), 2, widths=(32,))
        m.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((256, 16, 16, 1), dtype=np.float32); y = (x.mean((1, 2, 3)) > 0.5).astype("int32")
    cb = GradualCompression(final_keep=0.1, begin_step=0, end_step=4, frequency=2, basis="haar",
                            min_kernel_size=1, verbose=0)
    m.fit(x, y, epochs=2, batch_size=32, callbacks=[cb], verbose=0)
    st = get_state(m)
    assert strategy.num_replicas_in_sync == 2
    assert type(st.masks["fc1"]).__name__ == "MirroredVariable", type(st.masks["fc1"])
    err = st.max_hold_error()
    print("KEEP", st.keep_ratio, "ERR", err["projection_error"], err["outside_mask_max"])
    assert abs(st.keep_ratio - 0.1) < 1e-9 and err["projection_error"] < 1e-5
    assert err["outside_mask_max"] < 1e-5
    print("OK")
""")


def test_mirrored_strategy_two_logical_cpus(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(_MIRRORED)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([sys.executable, str(script), str(ROOT)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
