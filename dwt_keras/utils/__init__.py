"""Small shared utilities: atomic file output, run folders, seeding and option declarations."""

from dwt_keras._lazy import lazy_exports

_LAZY = {
    "atomic_save_figure": "dwt_keras.utils.io",
    "atomic_write_bytes": "dwt_keras.utils.io",
    "atomic_write_json": "dwt_keras.utils.io",
    "check_writable_dir": "dwt_keras.utils.io",
    "make_run_dir": "dwt_keras.utils.io",
    "set_seed": "dwt_keras.utils.seeding",
    "option": "dwt_keras.utils.options",
    "OptionError": "dwt_keras.utils.options",
    "validate_options": "dwt_keras.utils.options",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
