"""A model's architecture, stored compactly: its Keras config without the entries Keras would
restore anyway.

``model.to_json()`` spells out every argument of every layer (initialisers, regularisers,
constraints, defaults). `compact_config` drops, from each built-in Keras layer's config, each
entry whose removal leaves the layer's ``get_config()`` unchanged (a default), and the layer
objects' ``registered_name``/``build_config``; it then rebuilds the whole model from the compact
config and keeps it only if the rebuilt model's config is identical to the original's (else the
full config is used). Layer names and dtype policies are always kept (a default dtype depends on
the loading process's global policy).
"""

import functools
import json

_KEEP = ("name", "dtype")


def full_config(model):
    """The model's architecture as a JSON-ready dict, without its compile state."""
    config = json.loads(model.to_json())
    config.pop("compile_config", None)
    return config


def _is_builtin_layer(obj):
    return (isinstance(obj, dict) and isinstance(obj.get("config"), dict)
            and str(obj.get("module", "")).startswith("keras.layers")
            and "layers" not in obj["config"])


def _canonical(obj):
    import keras

    return json.dumps(keras.saving.deserialize_keras_object(obj).get_config(), sort_keys=True,
                      default=str)


def _strip_layer(obj):
    try:
        reference = _canonical(obj)
    except Exception:  # noqa: BLE001 - a layer Keras cannot rebuild alone: keep it whole
        return obj
    config = dict(obj["config"])
    for key in [k for k in config if k not in _KEEP]:
        trial = {**obj, "config": {k: v for k, v in config.items() if k != key}}
        try:
            if _canonical(trial) == reference:
                config.pop(key)
        except Exception:  # noqa: BLE001 - the argument is required
            pass
    out = {k: v for k, v in obj.items() if k not in ("registered_name", "build_config")}
    out["config"] = config
    return out


def _strip(obj):
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if _is_builtin_layer(obj):
        return _strip_layer(obj)
    return {k: _strip(v) for k, v in obj.items()}


@functools.lru_cache(maxsize=16)
def _compact_json(text):
    import keras

    config = json.loads(text)
    compact = _strip(config)
    try:
        rebuilt = full_config(keras.models.model_from_json(json.dumps(compact)))
    except Exception:  # noqa: BLE001 - fall back to the full config
        return text
    return json.dumps(compact, separators=(",", ":")) if rebuilt == config else text


def compact_config(model):
    """The model's architecture for `keras.models.model_from_json`, with defaults left out
    (verified: the rebuilt model's config equals ``model``'s)."""
    text = json.dumps(full_config(model), separators=(",", ":"), sort_keys=True)
    return json.loads(_compact_json(text))
