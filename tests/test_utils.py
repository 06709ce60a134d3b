"""Atomic output, run folders, evaluation metrics and latency."""

import json
import os
import pathlib

import keras
import numpy as np
import pytest

from dwt_keras import evaluation
from dwt_keras.utils import io


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out" / "report.json"
    io.atomic_write_json(target, {"a": np.float32(1.5), "b": np.arange(3)})
    assert json.loads(target.read_text()) == {"a": 1.5, "b": [0, 1, 2]}
    io.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["report.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.json"
    io.atomic_write_json(target, {"ok": True})
    with pytest.raises(TypeError, match="not JSON serializable"):
        io.atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["report.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_output_gets_the_mode_of_a_plain_open(tmp_path, umask):
    """dense_model.keras was written 0600 (tempfile.mkstemp), every other output 0644."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dwt_keras.compression import compress_model, save_compressed, sizes
    from dwt_keras.experiments.registry import build_model

    model = build_model("mlp", (4, 4, 1), 2, widths=(8,))
    model.compile("adam", "mse")
    compress_model(model, keep_ratio=0.5, basis="haar", min_kernel_size=1)
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        io.atomic_write_bytes(tmp_path / "a.bin", b"x")
        io.atomic_write_json(tmp_path / "report.json", {"a": 1})
        io.atomic_save_figure(plt.figure(), tmp_path / "fig.png")
        sizes.save_keras_atomic(model, tmp_path / "dense_model.keras")
        save_compressed(model, tmp_path / "compressed_model.dwtc")
        with io.atomic_path(tmp_path / "other.txt") as tmp:
            pathlib.Path(tmp).write_text("y")
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()}
    assert modes["plain.txt"] == oct(0o666 & ~umask)
    assert set(modes.values()) == {modes["plain.txt"]}, modes
    assert len(modes) == 7, modes  # no temporary file left behind


def test_run_dirs_are_new_and_unique(tmp_path):
    a = io.make_run_dir(tmp_path, "mnist lenet/300")
    b = io.make_run_dir(tmp_path, "mnist lenet/300")
    assert a != b and a.is_dir() and b.is_dir() and a.parent == tmp_path
    assert "/" not in a.name[len(str(tmp_path)):] and " " not in a.name


def test_unwritable_save_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="Cannot write to the output folder"):
        io.make_run_dir(blocker / "sub", "run")


def test_figure_saved_atomically(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = io.atomic_save_figure(fig, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["plot.png"]


def test_classification_metrics_match_hand_computation():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    m = evaluation.classification_metrics(y, np.eye(3)[pred], class_names=["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # class a: tp 1, fp 1, fn 1 -> p = r = 0.5; b: p = 2/3, r = 1; c: p = 1, r = 0.5
    assert [c["precision"] for c in m["per_class"]] == pytest.approx([0.5, 2 / 3, 1.0])
    assert [c["recall"] for c in m["per_class"]] == pytest.approx([0.5, 1.0, 0.5])
    assert m["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    with pytest.raises(ValueError, match="samples"):
        evaluation.classification_metrics(y[:3], np.eye(3)[pred])


def test_evaluate_classifier_loss_and_latency():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.integers(0, 3, 64)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    r = evaluation.evaluate_classifier(model, x, y, batch_size=16)
    logits = model.predict(x, verbose=0)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert r["test_loss"] == pytest.approx(-logp[np.arange(64), y].mean(), rel=1e-4)
    assert r["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == y))
    lat = evaluation.measure_latency(model, x, batch_size=8, repeats=5)
    assert lat["batch_size"] == 8 and lat["latency_ms_per_batch"] > 0
    assert lat["latency_ms_per_sample"] == pytest.approx(lat["latency_ms_per_batch"] / 8)


def test_public_names_resolve_lazily():
    import subprocess
    import sys

    code = (
        "import sys, dwt_keras, dwt_keras.compression as c, dwt_keras.training as t, "
        "dwt_keras.tuning as u, dwt_keras.experiments as e, dwt_keras.utils as x\n"
        "assert 'keras' not in sys.modules, 'import dwt_keras must stay light'\n"
        "missing = [m.__name__ + '.' + n for m in (dwt_keras, c, t, u, e, x) for n in m.__all__ "
        "if not hasattr(m, n)]\n"
        "assert not missing, missing\n"
        "print(len(dwt_keras.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) >= 40
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import dwt_keras

        dwt_keras.nope  # noqa: B018


def test_subpackages_are_reachable_as_attributes_after_a_plain_import():
    """The README's ``import dwt_keras; dwt_keras.compression.GradualCompression(...)``."""
    import subprocess
    import sys

    code = (
        "import sys, dwt_keras\n"
        "names = set(dir(dwt_keras))\n"
        "assert {'compression', 'wavelets', 'transformer', 'training', 'utils'} <= names, names\n"
        "assert 'keras' not in sys.modules, 'dir(dwt_keras) must not import the subpackages'\n"
        "cb = dwt_keras.compression.GradualCompression(final_keep=0.05, end_step=1000, "
        "basis='db4')\n"
        "assert type(cb).__module__ == 'dwt_keras.compression.callbacks'\n"
        "assert dwt_keras.compression.storage.save_compressed is dwt_keras.save_compressed\n"
        "assert dwt_keras.utils.io.atomic_write_bytes\n"
        "print('OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-2000:]


def test_cpu_model_names_the_processor():
    import pathlib

    from dwt_keras.utils.machine import cpu_model

    name = cpu_model()
    assert isinstance(name, str) and name.strip()
    info = pathlib.Path("/proc/cpuinfo")
    if info.exists():
        models = [l.split(":", 1)[1].strip() for l in info.read_text().splitlines()
                  if l.startswith("model name")]
        if models:
            assert name == models[0]
