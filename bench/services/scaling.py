"""Worker-scaling bench service (bench/scaling.py): hello-JSON and a CPU-bound numpy call.

Runs unchanged under bentohost and BentoML. BENCH_WORKERS sets the worker count for both
servers (read at import, as the decorator needs it); bentohost also gets --workers.
/work is BENCH_MATMUL_REPS (2) products of two fixed BENCH_MATMUL_N x BENCH_MATMUL_N (256)
float64 matrices: 2 x 2 x 256^3 = 67 MFLOP, about 2 ms on one core of a 2-vCPU EPYC VM with
OpenBLAS on one thread (bench/scaling.py sets the BLAS thread counts to 1 for both servers).
"""
import os

import numpy as np

try:
    import bentohost as bentoml
except ImportError:  # the same file under BentoML (bench/scaling.py starts it from bench/services/)
    import bentoml

N = int(os.environ.get("BENCH_MATMUL_N", "256"))
REPS = int(os.environ.get("BENCH_MATMUL_REPS", "2"))
_rng = np.random.default_rng(0)
A = _rng.standard_normal((N, N))
B = _rng.standard_normal((N, N))


def work(seed: int) -> float:
    """REPS fresh N x N products; the seed picks the element returned, so every answer is computed."""
    i = seed % N
    total = 0.0
    for _ in range(REPS):
        total += float((A @ B)[i, i])
    return total


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "1")))
class Scaling:
    @bentoml.api
    def hello(self, name: str = "world") -> dict:
        return {"message": f"Hello, {name}!"}

    @bentoml.api
    def work(self, seed: int = 0) -> dict:
        return {"value": work(seed)}
