"""The shared absl flags: defaults per app, validation before any work starts."""

import pytest
from absl import flags

from dwt_keras import cli


@pytest.fixture
def fresh_flags(monkeypatch):
    fv = flags.FlagValues()
    monkeypatch.setattr(cli.flags, "FLAGS", fv)
    # DEFINE_* write into flags.FLAGS by default; route them to the fresh registry.
    for name in ("DEFINE_string", "DEFINE_integer", "DEFINE_float", "DEFINE_enum", "DEFINE_boolean"):
        original = getattr(flags, name)
        monkeypatch.setattr(cli.flags, name, lambda *a, _o=original, **k: _o(*a, flag_values=fv, **k))
    return fv


def test_defaults_and_overrides(fresh_flags):
    cli.define_common_flags(epochs=3, dataset="cifar10")
    cli.define_common_flags(epochs=4)  # a second call reuses the flags with its own defaults
    fresh_flags(["prog", "--lr=0.01", "--strategy=mirrored"])
    assert fresh_flags.epochs == 4 and fresh_flags.dataset == "cifar10"
    assert fresh_flags.lr == 0.01 and fresh_flags.strategy == "mirrored"
    assert fresh_flags.save_dir == "./saved_models"


def test_bad_values_fail_at_parse_time(fresh_flags):
    cli.define_common_flags()
    with pytest.raises(flags.IllegalFlagValueError, match="strategy"):
        fresh_flags(["prog", "--strategy=horovod"])
    with pytest.raises(flags.IllegalFlagValueError):
        fresh_flags(["prog", "--batch_size=0"])


def test_unknown_default_name_is_rejected():
    with pytest.raises(ValueError, match="Unknown common flags"):
        cli.define_common_flags(epoch=3)


def test_coexists_with_absl_logging_log_dir(fresh_flags):
    # absl.logging defines --log_dir in the global registry; apps must not crash on it.
    flags.DEFINE_string("log_dir", "", "absl's own")  # routed to the fresh registry
    cli.define_common_flags(save_dir="./runs")
    fresh_flags(["prog", "--log_dir=/tmp/tb"])
    assert fresh_flags.log_dir == "/tmp/tb" and fresh_flags.save_dir == "./runs"
