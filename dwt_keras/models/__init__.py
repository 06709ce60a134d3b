"""Reference models: `lenet300`, `lenet5`, `resnet18` and `resnet20` (CIFAR variants), `mlp`,
`small_cnn`.

All models take images `(H, W, C)` and return logits (no softmax), so they pair with
`SparseCategoricalCrossentropy(from_logits=True)`. Every model the apps can train, these and the
learnable-wavelet and transformer models, is built by name through the one registry,
`dwt_keras.experiments.registry.build_model`.
"""

from dwt_keras.models.registry import lenet5, lenet300, mlp, resnet18, resnet20, small_cnn

__all__ = ["lenet300", "lenet5", "resnet18", "resnet20", "mlp", "small_cnn"]
