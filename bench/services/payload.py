"""Large-payload bench service (1 MiB float32 array, 1 MiB JPEG).

* total:      x as a float32 ndarray. JSON {"x": [...]} on both servers; bentohost also takes
              the raw buffer as application/octet-stream (its numpy fast path).
* total_file: the same array as a multipart file part (raw float32 bytes) -> Path:
              BentoML's binary path for an array.
* image_size: a PIL.Image.Image multipart upload; returns width*height (header only: the
              bench measures the upload path, not JPEG decoding).
Runs unchanged under bentohost and BentoML (bench/io.py).
"""
from pathlib import Path
from typing import Annotated

import numpy as np
import PIL.Image

try:
    import bentohost as bentoml
    from bentohost.validators import DType
except ImportError:
    import bentoml
    from bentoml.validators import DType


@bentoml.service
class Payload:
    @bentoml.api
    def total(self, x: Annotated[np.ndarray, DType("float32")]) -> float:
        return float(x.sum(dtype=np.float64))

    @bentoml.api
    def total_file(self, f: Path) -> float:
        return float(np.fromfile(f, dtype=np.float32).sum(dtype=np.float64))

    @bentoml.api
    def image_size(self, image: PIL.Image.Image) -> int:
        return image.width * image.height
