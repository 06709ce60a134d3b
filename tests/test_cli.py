"""The command-line layer: flags made from the config dataclasses, and one-line errors."""

import dataclasses
import os
import pathlib
import subprocess
import sys

import pytest
from absl import flags

from dwt_keras import cli
from dwt_keras.utils.options import OptionError, option

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class _Config:
    epochs: int = option(10, "Training epochs.", minimum=0)
    lr: float = option(1e-3, "Learning rate.", minimum=0.0, exclusive_minimum=True)
    optimizer: str = option("adam", "Optimizer.", choices=("adam", "sgd"))
    widths: tuple = option((300, 100), "Hidden widths.", list_of=int)
    plots: bool = option(True, "Write plots.", aliases=("plot",))
    overrides: dict = option(None, "Per-layer settings as JSON.", kind="json")
    level: int = option(None, "Level (None: auto).", minimum=1, kind="integer")
    callbacks: list = option(default_factory=list, flag=False)


def _flags(*argv, **defaults):
    fv = flags.FlagValues()
    names = cli.define_flags(_Config, flag_values=fv, **defaults)
    fv(["prog", *argv])
    return fv, names


def test_one_flag_per_field_with_the_declared_type_help_and_choices():
    fv, names = _flags()
    assert names == ["epochs", "lr", "optimizer", "widths", "plots", "overrides", "level"]
    assert "callbacks" not in fv  # a Python-only field has no flag
    assert fv["epochs"].help == "Training epochs." and fv.epochs == 10
    assert fv["optimizer"].parser.enum_values == ["adam", "sgd"]
    config = cli.config_from_flags(_Config, flag_values=fv)
    assert config == _Config()
    fv, _ = _flags("--epochs=3", "--widths=8,4", "--noplots", '--overrides={"fc1": {"level": 1}}',
                   "--level=2")
    config = cli.config_from_flags(_Config, flag_values=fv)
    assert (config.epochs, config.widths, config.plots, config.overrides, config.level) == \
        (3, (8, 4), False, {"fc1": {"level": 1}}, 2)


def test_per_app_defaults_and_aliases():
    fv, _ = _flags("--noplot", epochs=7)  # the old spelling of --plots still works
    config = cli.config_from_flags(_Config, flag_values=fv)
    assert config.epochs == 7 and config.plots is False
    fv, _ = _flags("--noplot", "--plots")
    with pytest.raises(OptionError, match="not both"):
        cli.config_from_flags(_Config, flag_values=fv)


def test_a_flag_defined_twice_is_reused_with_the_new_default():
    fv = flags.FlagValues()
    flags.DEFINE_string("log_dir", "", "absl's own", flag_values=fv)  # as absl.logging does
    cli.define_flags(_Config, flag_values=fv, epochs=3)
    cli.define_flags(_Config, flag_values=fv, epochs=4)
    fv(["prog"])
    assert fv.epochs == 4


def test_bad_values_fail_at_parse_time_or_as_one_line():
    with pytest.raises(flags.IllegalFlagValueError, match="optimizer"):
        _flags("--optimizer=lamb")
    fv, _ = _flags("--widths=a,b")
    with pytest.raises(OptionError, match="comma-separated list of int"):
        cli.config_from_flags(_Config, flag_values=fv)
    error = OptionError("keep_ratio", "`keep_ratio` must be > 0.0 and <= 1.0. "
                                      "Received: keep_ratio=1.5")
    fv = flags.FlagValues()
    flags.DEFINE_float("keep_ratio", 0.03, "", flag_values=fv)
    assert cli.flag_error(error, fv) == ("error: --keep_ratio must be > 0.0 and <= 1.0. "
                                         "Received: --keep_ratio=1.5 (see --help)")


@pytest.mark.parametrize("app", ["DWT_model.py", "wmsa_cifar10.py", "learnable_wavelet.py",
                                 "spectral_study.py", "compression_sweep.py", "tune.py",
                                 "compare_models.py"])
@pytest.mark.slow
def test_every_app_prints_its_flags_and_one_line_errors(app, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)  # the apps run from a checkout as documented
    if app == "DWT_model.py":  # --help lists the flags made from the config
        proc = subprocess.run([sys.executable, f"apps/{app}", "--helpshort"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)
        assert "--save_dir" in proc.stdout and "--keep_ratio" in proc.stdout, proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, f"apps/{app}", "--seed=-1",
                           f"--save_dir={tmp_path}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert lines == ["error: --seed must be >= 0. Received: --seed=-1 (see --help)"]
    assert "Traceback" not in proc.stderr and not any(tmp_path.iterdir())
