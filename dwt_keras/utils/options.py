"""Declaring settings once: dataclass fields that carry their own help, choices and bounds.

Every config of the project (`dwt_keras.experiments` recipes, the spectral options, the search)
is a dataclass whose fields are declared with `option(...)`. The same declaration gives

* the Python API its defaults and its validation (`validate_options`), with errors that name the
  argument the Keras way ("... Received: keep_ratio=1.5");
* the command line its flags (`dwt_keras.cli.define_flags` reads the field metadata), so an app
  never re-declares a setting and help texts cannot drift.

Example:

```python
@dataclasses.dataclass
class MyOptions:
    epochs: int = option(10, "Training epochs.", minimum=0)
    optimizer: str = option("adam", "Optimizer.", choices=("adam", "sgd"))

validate_options(MyOptions(epochs=-1))   # OptionError: ... Received: epochs=-1
```
"""

from __future__ import annotations

import dataclasses
import math
import numbers

__all__ = ["OptionError", "option", "validate_options", "option_fields", "field_metadata",
           "check_choice", "check_int", "check_number"]


class OptionError(ValueError):
    """A setting with an invalid value. `option` names it (the field / flag name).

    The message speaks in argument names ("Received: keep_ratio=1.5"); the command-line layer
    (`dwt_keras.cli`) prints it with the flag spelling instead.
    """

    def __init__(self, option, message):
        super().__init__(message)
        self.option = option


def option(default=dataclasses.MISSING, help=None, *, choices=None, minimum=None, maximum=None,
           exclusive_minimum=None, exclusive_maximum=None, kind=None, list_of=None, flag=None,
           aliases=None, default_factory=dataclasses.MISSING, allow_none=None):
    """A dataclass field with the metadata that validation and the flags need.

    Args:
        default: the default value (a tuple for sequences; use `default_factory` for lists).
        help: one sentence for `--help`. Every argument left out is inherited from a base class
            declaring the same field, so a recipe that only changes a default repeats nothing.
        choices: the valid values. For `list_of=str`, each element must be one of them.
        minimum, maximum: numeric bounds (inclusive unless `exclusive_*`).
        kind: the flag kind when the default does not tell (`"string"`, `"integer"`, `"float"`,
            `"boolean"`, `"list"`, `"json"`).
        list_of: the element type of a sequence setting (`int`, `float`, `str`); the flag is a
            comma-separated list.
        flag: `False` for settings that have no command-line flag (callbacks, model functions).
        aliases: other flag names accepted for this setting (old names kept working).
        default_factory: as in `dataclasses.field`.
        allow_none: `None` is a valid value (default: when the default is `None`).
    """
    given = dict(help=help, choices=None if choices is None else tuple(choices), minimum=minimum,
                 maximum=maximum, exclusive_minimum=exclusive_minimum,
                 exclusive_maximum=exclusive_maximum, kind=kind, list_of=list_of, flag=flag,
                 aliases=None if aliases is None else tuple(aliases), allow_none=allow_none)
    metadata = {"option": True, **{k: v for k, v in given.items() if v is not None}}
    if default is None and "allow_none" not in metadata:
        metadata["allow_none"] = True
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


_METADATA_DEFAULTS = dict(option=False, help=None, choices=None, minimum=None, maximum=None,
                          exclusive_minimum=False, exclusive_maximum=False, kind=None,
                          list_of=None, flag=True, aliases=(), allow_none=False)


def field_metadata(cls, name):
    """The `option` metadata of field `name`, completed from the base classes.

    A subclass that re-declares a field only to change its default (`epochs: int = option(100)`)
    inherits the help, choices and bounds of the nearest base class that declares them.
    """
    cls = cls if isinstance(cls, type) else type(cls)
    merged = dict(_METADATA_DEFAULTS)
    for klass in reversed(cls.__mro__):
        f = klass.__dict__.get("__dataclass_fields__", {}).get(name)
        if f is not None:
            merged.update(f.metadata)
    return merged


def option_fields(cls):
    """`(field, metadata)` for every field of the dataclass `cls` (instance or class)."""
    return [(f, field_metadata(cls, f.name)) for f in dataclasses.fields(cls)]


def _fmt(value):
    return repr(value) if isinstance(value, str) else str(value)


def check_choice(name, value, choices):
    """Raises `OptionError` unless `value` is one of `choices`."""
    if value not in choices:
        raise OptionError(name, f"`{name}` must be one of {', '.join(map(str, choices))}. "
                                f"Received: {name}={_fmt(value)}")
    return value


def check_int(name, value, minimum=None, maximum=None, allow_none=False):
    """Raises `OptionError` unless `value` is an integer within the bounds."""
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptionError(name, f"`{name}` must be an integer. Received: {name}={_fmt(value)}")
    _check_bounds(name, value, minimum, maximum, False, False)
    return int(value)


def check_number(name, value, minimum=None, maximum=None, exclusive_minimum=False,
                 exclusive_maximum=False, allow_none=False):
    """Raises `OptionError` unless `value` is a finite number within the bounds."""
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise OptionError(name, f"`{name}` must be a finite number. Received: {name}={_fmt(value)}")
    _check_bounds(name, value, minimum, maximum, exclusive_minimum, exclusive_maximum)
    return value


def _check_bounds(name, value, minimum, maximum, exclusive_minimum, exclusive_maximum):
    low_ok = minimum is None or (value > minimum if exclusive_minimum else value >= minimum)
    high_ok = maximum is None or (value < maximum if exclusive_maximum else value <= maximum)
    if low_ok and high_ok:
        return
    lo = "" if minimum is None else f"{'>' if exclusive_minimum else '>='} {minimum}"
    hi = "" if maximum is None else f"{'<' if exclusive_maximum else '<='} {maximum}"
    bound = " and ".join(b for b in (lo, hi) if b)
    raise OptionError(name, f"`{name}` must be {bound}. Received: {name}={_fmt(value)}")


def value_kind(f, meta):
    """`"integer"`, `"float"`, `"boolean"`, `"string"`, `"list"` or `"json"` of a field."""
    if meta.get("kind"):
        return meta["kind"]
    if meta.get("list_of") is not None:
        return "list"
    default = f.default if f.default is not dataclasses.MISSING else None
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, numbers.Integral):
        return "integer"
    if isinstance(default, numbers.Real):
        return "float"
    if isinstance(default, (tuple, list)):
        return "list"
    if isinstance(default, dict):
        return "json"
    return "string"


_ELEMENT_KIND = {int: "integer", float: "float", str: "string"}


def _check_one(name, value, meta, kind):
    if meta.get("choices") is not None:
        check_choice(name, value, meta["choices"])
        return
    bounds = dict(minimum=meta.get("minimum"), maximum=meta.get("maximum"))
    if kind == "integer":
        check_int(name, value, **bounds)
    elif kind == "float":
        check_number(name, value, exclusive_minimum=meta.get("exclusive_minimum"),
                     exclusive_maximum=meta.get("exclusive_maximum"), **bounds)
    elif kind == "boolean" and not isinstance(value, bool):
        raise OptionError(name, f"`{name}` must be True or False. Received: {name}={_fmt(value)}")


def validate_options(config):
    """Checks every `option` field of a dataclass instance against its declaration.

    Returns `config`. Raises `OptionError` naming the first invalid field.
    """
    for f, meta in option_fields(config):
        if not meta["option"]:
            continue  # a plain field (callbacks, functions): nothing declared to check
        value = getattr(config, f.name)
        if value is None:
            if meta["allow_none"]:
                continue
            raise OptionError(f.name, f"`{f.name}` must be set. Received: {f.name}=None")
        kind = value_kind(f, meta)
        if kind == "list":
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise OptionError(f.name, f"`{f.name}` must be a sequence. "
                                          f"Received: {f.name}={_fmt(value)}")
            element = _ELEMENT_KIND.get(meta.get("list_of"), "any")
            for item in value:
                _check_one(f.name, item, meta, element)
        elif kind != "json":
            _check_one(f.name, value, meta, kind)
    return config
