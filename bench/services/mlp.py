"""Adaptive batching bench service: a numpy MLP relu(x @ W1) @ W2, 256x256 float32 (seed 0).

Runs unchanged under bentohost and BentoML (bench/batching.py serves it with each).
Request: {"x": [[256 floats]]} (one row; the batch dimension is 0).
"""
import numpy as np

try:
    import bentohost as bentoml
    from bentohost.validators import DType
except ImportError:
    import bentoml
    from bentoml.validators import DType
from typing import Annotated

DIM = 256
_rng = np.random.default_rng(0)
W1 = (_rng.standard_normal((DIM, DIM)) / 16).astype(np.float32)
W2 = (_rng.standard_normal((DIM, DIM)) / 16).astype(np.float32)


def mlp(x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ W1, 0.0) @ W2


@bentoml.service
class MLP:
    @bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=50)
    def predict(self, x: Annotated[np.ndarray, DType("float32")]) -> np.ndarray:
        return mlp(x)
