"""What the shared TensorBoard set logs about compression (`--log_dir` of the compression runs).

`compression_scalars` (coefficient-domain sparsity per compressed layer) and
`compression_histograms` (each compressed kernel's coefficients in its own geometry-aware basis)
plug into `dwt_keras.training.callbacks.standard_callbacks(extra_scalars=..., histogram_fns=...)`.

Example:

```python
tb = standard_callbacks("logs", model, extra_scalars=compression_scalars,
                        histogram_fns={"coefficients": compression_histograms("haar", 2)})
```
"""

import numpy as np

from dwt_keras.compression.constraints import get_state
from dwt_keras.training.callbacks import coefficient_histograms


def _compression_state(model):
    state = get_state(model)
    if state is None or (state.keep_ratio is None and state.threshold is None):
        return None
    return state


def compression_scalars(model):
    """Coefficient-domain sparsity per compressed layer and overall, once the model is pruned.

    Reads the `CompressionState` that the compression callbacks attach to the model; `{}` before
    compression (and for models that are never compressed).
    """
    state = _compression_state(model)
    if state is None:
        return {}
    out = {f"coefficient_sparsity/{s['name']}": s["coefficient_sparsity"]
           for s in state.layer_stats()}
    out["coefficient_sparsity/overall"] = state.coefficient_sparsity()
    return out


def compression_histograms(wavelet="haar", level=2, mode="periodization"):
    """A histogram function: the compression's own coefficients of each compressed kernel (its
    geometry-aware transform), or `coefficient_histograms` before compression."""
    generic = coefficient_histograms(wavelet, level, mode)

    def fn(model):
        state = _compression_state(model)
        if state is None:
            return generic(model)
        return {f"coefficients/{n}": np.asarray(c, dtype=np.float32)
                for n, c in state.coefficients().items()}

    return fn
