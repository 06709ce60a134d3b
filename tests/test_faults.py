"""Fault injection: interrupted runs, killed runs and full disks lose nothing and mislead no one.

* SIGINT (Ctrl-C) in each phase of a tiny compression run in a subprocess: one line says where
  the partial run is, the exit code is 130, `status.json` says `interrupted` with the phase, and
  `report.json` keeps what the finished phases measured; the same command runs again.
* SIGKILL: the folder reads as interrupted (its process is gone) and no reader of finished
  runs takes it for one.
* A resumable run (W-MSA) interrupted in training resumes with the same command, saying so.
* A full disk (ENOSPC injected at each write of a run): a clear error naming the file, the
  folder and the free bytes; the metrics measured so far stay in report.json.
"""

import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dwt_keras.experiments.run import is_finished, run_state

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--model", "mlp", "--mlp_widths", "16", "--batch_size", "32", "--max_train_samples",
        "256", "--max_eval_samples", "64", "--latency_repeats", "2", "--keep_ratio", "0.1",
        "--noplots", "--verbose", "2"]


# A process started with SIGINT ignored (a background job of a non-interactive shell, e.g.
# `pytest &` in a script) passes the ignored signal on to its children, and Python then
# installs no KeyboardInterrupt handler: a Ctrl-C test would see its run finish instead. The
# children these tests signal therefore install Python's handler first, as an interactive
# shell's foreground job has it.
SIGINT_RAISES = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
RUN_APP = SIGINT_RAISES + ("import runpy, sys; sys.argv = sys.argv[1:]; "
                           "runpy.run_path(sys.argv[0], run_name='__main__')")


def _app(script, *args):
    """The command running `script` (an app) with `args` as a user's Ctrl-C would reach it."""
    return [sys.executable, "-c", RUN_APP, script, *args]


def _env(data_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               DWT_KERAS_DATA_DIR=str(data_dir))
    env.pop("PYTHONPATH", None)
    return env


def _status(folder):
    path = folder / "status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _wait_for_phase(save_dir, phase, proc, timeout=240):
    """The run folder once its status.json shows `phase` (the process still running)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        for folder in save_dir.glob("*/"):
            status = _status(folder)
            if status and status.get("phase") == phase:
                return folder
        time.sleep(0.05)
    raise AssertionError(f"phase {phase!r} not reached")


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["dense training", "retraining with the masks held"])
def test_ctrl_c_in_a_phase_marks_the_run_and_says_where_it_is(tmp_path, tiny_data_dir, phase):
    save = tmp_path / "runs"
    cmd = _app("apps/DWT_model.py", *TINY, "--epochs", "40", "--retrain_epochs", "40",
               "--early_stopping_patience", "0", "--save_dir", str(save))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(tiny_data_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    folder = _wait_for_phase(save, phase, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"Interrupted during {phase}: the partial run is in {folder}" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    status = _status(folder)
    assert status["state"] == "interrupted" and status["phase"] == phase
    assert run_state(folder) == "interrupted" and not is_finished(folder)
    if phase != "dense training":  # the dense phase's metrics were written before
        report = json.loads((folder / "report.json").read_text())
        assert 0.0 <= report["dense"]["test_accuracy"] <= 1.0 and "compressed" not in report


def _script_run(script, args, data_dir, timeout=300):
    return subprocess.run([sys.executable, "-c", SIGINT_RAISES + textwrap.dedent(script), *args],
                          cwd=ROOT, env=dict(_env(data_dir), PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=timeout)


# The app, with save_compressed sending the given signal to its own process: the fault arrives
# while the compressed file is being written.
SIGNAL_WHILE_WRITING = """
    import os, signal, sys, runpy
    from dwt_keras.compression import storage
    original = storage.save_compressed
    fault = getattr(signal, sys.argv[1])

    def save_compressed(*args, **kwargs):
        os.kill(os.getpid(), fault)
        return original(*args, **kwargs)

    storage.save_compressed = save_compressed
    sys.argv = ["apps/DWT_model.py", *sys.argv[2:]]
    runpy.run_path("apps/DWT_model.py", run_name="__main__")
"""


def test_signals_while_writing_the_compressed_file(tmp_path, tiny_data_dir):
    save = tmp_path / "runs"
    args = [*TINY, "--epochs", "1", "--retrain_epochs", "1", "--save_dir", str(save)]
    proc = _script_run(SIGNAL_WHILE_WRITING, ["SIGINT", *args], tiny_data_dir)
    assert proc.returncode == 130, proc.stderr[-3000:]
    (first,) = list(save.iterdir())
    assert _status(first)["phase"] == "writing the compressed file"
    assert "Interrupted during writing the compressed file" in proc.stderr
    assert not (first / "compressed_model.dwtc").exists()  # nothing half-written
    assert "dense" in json.loads((first / "report.json").read_text())

    proc = _script_run(SIGNAL_WHILE_WRITING, ["SIGKILL", *args], tiny_data_dir)
    assert proc.returncode == -signal.SIGKILL
    (killed,) = [p for p in save.iterdir() if p != first]
    assert _status(killed)["state"] == "running"       # it had no chance to say more...
    assert run_state(killed) == "interrupted"          # ...but its process is gone
    assert not list(killed.glob("*.tmp*")) and not list(killed.glob(".*tmp*"))

    # The same command again: a new, finished run; readers skip the two others.
    again = subprocess.run([sys.executable, "apps/DWT_model.py", *args], cwd=ROOT,
                           env=_env(tiny_data_dir), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    from dwt_keras.experiments.compare import finished_runs

    finished, skipped = finished_runs(save)
    assert len(finished) == 1 and is_finished(finished[0])
    assert sorted(s["state"] for s in skipped) == ["interrupted", "interrupted"]


@pytest.mark.slow
def test_an_interrupted_wmsa_run_resumes_with_the_same_command(tmp_path, tiny_data_dir):
    save = tmp_path / "wmsa"
    cmd = _app("apps/wmsa_cifar10.py", "--model=vit", "--model_size=custom",
               "--embed_dim=8", "--depth=1", "--num_heads=1", "--patch_size=8",
               "--dataset=cifar10_subset", "--max_train_samples=64", "--batch_size=32",
               "--epochs=30", "--warmup_epochs=0", "--augment=none", "--verbose=2",
               f"--save_dir={save}")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(tiny_data_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    folder = _wait_for_phase(save, "training", proc)
    while not (folder / "history.csv").exists() or \
            len((folder / "history.csv").read_text().splitlines()) < 3:
        assert proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "re-run the same command to resume it" in err
    done = len((folder / "history.csv").read_text().splitlines()) - 1
    assert 2 <= done < 30
    short = [*cmd[:-2], "--epochs=30", f"--save_dir={save}"]
    again = subprocess.run(short, cwd=ROOT, env=_env(tiny_data_dir), capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming the interrupted run in {folder}" in again.stdout
    assert f"from epoch {done + 1} of 30" in again.stdout
    rows = (folder / "history.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(30))
    assert is_finished(folder)


# --------------------------------------------------------------------------------------------
# A full disk


def _tiny_config(tmp_path, data_dir, **kw):
    from dwt_keras.experiments.compression import CompressionConfig

    return CompressionConfig(dataset="mnist", data_dir=str(data_dir), model="mlp",
                             mlp_widths=(16,), epochs=1, retrain_epochs=1, batch_size=64,
                             max_train_samples=256, max_eval_samples=64, latency_repeats=2,
                             keep_ratio=0.1, verbose=0, save_dir=str(tmp_path), **kw)


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("target,name", [
    ("dwt_keras.experiments.run.save_keras_atomic", "dense_model.keras"),
    ("dwt_keras.compression.storage.save_compressed", "compressed_model.dwtc"),
    ("dwt_keras.compression.report.plot_training_curves", "training_curves.png"),
    ("dwt_keras.experiments.run.atomic_write_json", "status.json"),
])
@pytest.mark.slow
def test_a_full_disk_names_the_file_and_keeps_what_was_measured(tmp_path, tiny_data_dir,
                                                                monkeypatch, target, name):
    import importlib

    from dwt_keras.experiments.compression import run_compression

    module, attr = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), attr, _full)
    with pytest.raises(OSError, match=f"No space left on the device for {name} in "
                                      f".*bytes are free") as e:
        run_compression(_tiny_config(tmp_path, tiny_data_dir))
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    folders = list(tmp_path.iterdir())
    if name == "status.json":  # nothing could be written: nothing pretends to be a run
        assert all(not (f / "report.json").exists() for f in folders)
        return
    (folder,) = folders
    status = json.loads((folder / "status.json").read_text())
    assert status["state"] == "failed" and "No space left" in status["error"]
    if name != "dense_model.keras":
        report = json.loads((folder / "report.json").read_text())
        assert 0.0 <= report["dense"]["test_accuracy"] <= 1.0


def test_epochs_zero_and_a_bad_dataset_create_nothing(tmp_path, tiny_data_dir):
    from dwt_keras.experiments.transformer import TransformerConfig, run_transformer
    from dwt_keras.utils.options import OptionError

    save = tmp_path / "out"
    with pytest.raises(OptionError, match="`epochs=0` trains nothing"):
        run_transformer(TransformerConfig(epochs=0, save_dir=str(save)))
    with pytest.raises(OptionError, match="Dataset 'nosuch' is not available"):
        run_transformer(TransformerConfig(dataset="nosuch", data_dir=str(tiny_data_dir),
                                          epochs=1, save_dir=str(save)))
    assert not save.exists()


@pytest.mark.slow
def test_seeded_runs_repeat_exactly(tmp_path, tiny_data_dir):
    from dwt_keras.experiments.transformer import TransformerConfig, run_transformer

    def run(name):
        return run_transformer(TransformerConfig(
            model="wmsa", model_size="custom", embed_dim=8, depth=1, num_heads=1, n_levels=2,
            wavelet="haar", dataset="cifar10_subset", data_dir=str(tiny_data_dir),
            max_train_samples=64, batch_size=32, epochs=2, warmup_epochs=1, seed=7,
            augment="crop_flip", verbose=0, save_dir=str(tmp_path), run_name=name))

    a, b = run("a"), run("b")
    assert [r["accuracy"] for r in a["history"]] == [r["accuracy"] for r in b["history"]]
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    assert a["test"]["confusion_matrix"] == b["test"]["confusion_matrix"]
