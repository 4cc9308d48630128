"""Adaptive batching on a GPU (bench/gpu_batch.py): a bf16 MLP made up here, no download.

Runs unchanged under bentohost and BentoML. Four Linear layers 1024 -> 4096 -> 4096 -> 4096 ->
1024 with ReLU between them (BENCH_MLP_DIMS), weights drawn from torch.randn with seed 0 and
scaled by 1/sqrt(fan_in) so that activations stay near 1, in bfloat16 on cuda:0 (BENCH_DEVICE; the service
asks for one GPU, so both servers set CUDA_VISIBLE_DEVICES). About 84 MFLOP per row.
Request: {"x": [[1024 floats]]} (one row; the batch dimension is 0); answer: 1024 floats.
BENCH_MAX_BATCH (64) and BENCH_MAX_LATENCY_MS (10) set the batching, read at import by both.
"""
import os
from typing import Annotated

import numpy as np
import torch

try:
    import bentohost as bentoml
    from bentohost.validators import DType
except ImportError:  # the same file under BentoML (bench/gpu_batch.py starts it from bench/services/)
    import bentoml
    from bentoml.validators import DType

DIMS = tuple(int(d) for d in os.environ.get("BENCH_MLP_DIMS", "1024,4096,4096,4096,1024").split(","))
MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "64"))
MAX_LATENCY_MS = int(os.environ.get("BENCH_MAX_LATENCY_MS", "10"))
# "cpu" only to check bench/gpu_batch.py where there is no GPU (its --device cpu)
DEVICE = os.environ.get("BENCH_DEVICE", "cuda")


def build_model(device: str = DEVICE) -> torch.nn.Sequential:
    gen = torch.Generator().manual_seed(0)
    layers: list[torch.nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(DIMS, DIMS[1:])):
        lin = torch.nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(fan_out, fan_in, generator=gen) / fan_in ** 0.5)
            lin.bias.copy_(torch.randn(fan_out, generator=gen) * 0.01)
        layers.append(lin)
        if i < len(DIMS) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).to(device=device, dtype=torch.bfloat16).eval()


def infer(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """float32 rows in, float32 rows out; the copy back to the host synchronises."""
    with torch.inference_mode():
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(DEVICE).to(torch.bfloat16)
        return model(t).float().cpu().numpy()


@bentoml.service(workers=1, resources={"gpu": 1})
class GpuMLP:
    def __init__(self) -> None:
        self.model = build_model()
        # cuBLAS picks its kernels on first use: do it for the batch sizes to come, not in the first requests
        rng = np.random.default_rng(1)
        for b in sorted({1, 2, 4, 8, 16, 32, MAX_BATCH}):
            infer(self.model, rng.standard_normal((b, DIMS[0]), dtype=np.float32))

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, x: Annotated[np.ndarray, DType("float32")]) -> np.ndarray:
        return infer(self.model, x)
