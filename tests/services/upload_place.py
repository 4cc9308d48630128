"""Where an uploaded file lives while its request runs (tests/test_multipart.py)."""
import os
from pathlib import Path

import bentohost


@bentohost.service(workers=1)
class UploadPlace:
    @bentohost.api
    def where(self, f: Path) -> dict:
        return {"path": str(f), "size": f.stat().st_size, "pid": os.getpid()}
