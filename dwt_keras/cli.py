"""The command-line layer: absl flags made from config dataclasses, and short error messages.

Every app is flag wiring only::

    from dwt_keras import cli
    from dwt_keras.experiments.compression import CompressionConfig, run_compression

    cli.define_flags(CompressionConfig)                 # one flag per config field
    def main(argv):
        config = cli.config_from_flags(CompressionConfig)
        report = run_compression(config)
    if __name__ == "__main__":
        cli.run(main)

* `define_flags(cls)` defines `--<field>` for every `option(...)` field of `cls` (type, help,
  choices from the declaration; see `dwt_keras.utils.options`), plus the aliases of renamed
  flags. Defining the same flag twice (two apps imported into one process, absl's own
  `--log_dir`) reuses it with this config's default.
* `config_from_flags(cls)` builds the config from the parsed flags (lists become tuples, JSON
  flags are parsed, an alias that was given wins over its flag's default).
* `run(main)` runs an absl app whose errors are one clear line: a bad setting prints
  `error: --name=value: <why> (see --help)` and exits 2, without the usage text; Ctrl-C exits 130
  after the engine's one line about the partial run.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from absl import app, flags

from dwt_keras.utils.options import OptionError, option_fields, value_kind

__all__ = ["define_flags", "config_from_flags", "flag_error", "run", "present_flags"]

FLAGS = flags.FLAGS


def _flag_type(f, meta):
    kind = value_kind(f, meta)
    if meta.get("choices") is not None and kind == "string":
        return "enum"
    return kind


def _default_for_flag(value, kind):
    if kind == "list" and value is not None:
        return [str(v) for v in value]
    if kind == "json" and value is not None:
        return json.dumps(value)
    return value


def define_flags(config_class, flag_values=None, exclude=(), **defaults):
    """Defines one flag per `option` field of `config_class` (and its aliases).

    Args:
        config_class: a config dataclass (e.g. `CompressionConfig`).
        flag_values: the `FlagValues` (default `absl.flags.FLAGS`).
        exclude: field names that get no flag in this app.
        **defaults: per-app defaults that differ from the config's.

    Returns:
        The names of the flags this config reads.
    """
    fv = flag_values if flag_values is not None else FLAGS
    # `--help` lists the key flags of the app's module: make these flags the caller's.
    module = sys._getframe(1).f_globals.get("__name__", "__main__")
    if module == "__main__":  # absl names the main module after its file
        module = sys.argv[0]
    names = []
    for f, meta in option_fields(config_class):
        if not meta["option"] or not meta["flag"] or f.name in exclude:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        default = defaults.get(f.name, default)
        kind = _flag_type(f, meta)
        help_text = meta.get("help") or f.name
        flag_default = _default_for_flag(default, kind)
        for name in (f.name, *meta["aliases"]):
            if name in fv:  # an app, absl or an earlier call owns it: reuse with our default
                if name == f.name:
                    fv.set_default(name, flag_default)
                continue
            text = help_text if name == f.name else f"Alias of --{f.name}."
            alias_default = flag_default if name == f.name else None
            if kind == "enum":
                choices = [str(c) for c in meta["choices"]]
                flags.DEFINE_enum(name, None if alias_default is None else str(alias_default),
                                  choices, text, flag_values=fv)
            elif kind == "boolean":
                flags.DEFINE_boolean(name, alias_default, text, flag_values=fv)
            elif kind == "integer":
                flags.DEFINE_integer(name, alias_default, text, flag_values=fv)
            elif kind == "float":
                flags.DEFINE_float(name, alias_default, text, flag_values=fv)
            elif kind == "list":
                flags.DEFINE_list(name, alias_default, text, flag_values=fv)
            else:  # string and json
                flags.DEFINE_string(name, None if alias_default is None else str(alias_default),
                                    text, flag_values=fv)
        for name in (f.name, *meta["aliases"]):
            fv.register_key_flag_for_module(module, fv[name])
        names.append(f.name)
    return names


def present_flags(flag_values=None):
    """Names of the flags given on the command line (or in a flag file)."""
    fv = flag_values if flag_values is not None else FLAGS
    return {name for name in fv if fv[name].present}


def _convert(f, meta, value, name):
    kind = value_kind(f, meta)
    if value is None:
        return None
    if kind == "list":
        cast = meta.get("list_of") or str
        try:
            return tuple(cast(v) for v in value)
        except ValueError:
            raise OptionError(f.name, f"`{name}` must be a comma-separated list of "
                                      f"{cast.__name__} values. Received: {name}="
                                      f"{','.join(map(str, value))}") from None
    if kind == "json":
        if isinstance(value, dict):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise OptionError(f.name, f"`{name}` is not valid JSON ({e}). "
                                      f"Received: {name}={value}") from None
    return value


def config_from_flags(config_class, flag_values=None, exclude=(), **overrides):
    """The config built from the parsed flags (fields without a flag keep their defaults).

    An alias given on the command line wins over its flag's default; giving both an alias and
    its flag is an error.
    """
    fv = flag_values if flag_values is not None else FLAGS
    values = {}
    for f, meta in option_fields(config_class):
        if not meta["option"] or not meta["flag"] or f.name in exclude or f.name not in fv:
            continue
        given = [a for a in meta["aliases"] if a in fv and fv[a].present]
        if given and fv[f.name].present:
            raise OptionError(f.name, f"Give --{f.name} or its alias --{given[0]}, not both.")
        name = given[0] if given else f.name
        values[f.name] = _convert(f, meta, fv[name].value, name)
    values.update(overrides)
    return config_class(**values)


def flag_error(error, flag_values=None):
    """The one-line message of a bad setting, in flag spelling (`name` -> --name)."""
    import re

    fv = flag_values if flag_values is not None else FLAGS
    known = set(fv) | {getattr(error, "option", None)}

    def flag(match):
        name = match.group(1) or match.group(2)
        if name not in known:
            return match.group(0)
        return f"--{name}" if match.group(1) else f"--{name}="

    text = re.sub(r"`(\w+)`|(?<![\w-])(\w+)=", flag, str(error))
    return f"error: {text} (see --help)"


def run(main, argv=None):
    """`absl.app.run(main)` with one-line errors for bad settings and a quiet Ctrl-C."""
    def wrapped(args):
        try:
            return main(args)
        except (OptionError, app.UsageError) as e:
            print(flag_error(e), file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)

    app.run(wrapped, argv=argv)
