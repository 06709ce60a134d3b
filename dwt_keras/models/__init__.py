"""Reference models: `lenet300`, `lenet5`, `resnet18` (CIFAR variant), `mlp`.

All models take images `(H, W, C)` and return logits (no softmax), so they pair with
`SparseCategoricalCrossentropy(from_logits=True)`.
"""

from dwt_keras.models.registry import MODELS, build_model, lenet5, lenet300, mlp, resnet18

__all__ = ["MODELS", "build_model", "lenet300", "lenet5", "resnet18", "mlp"]
