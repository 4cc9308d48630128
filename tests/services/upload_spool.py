"""Uploads whose dirs and files the worker reuses (tests/test_upload_spool.py): each API
reports what its file looks like, or keeps it past its request in some way."""
import hashlib
import os
import shutil
from pathlib import Path

import bentohost

HELD: dict[str, object] = {}


def describe(f: Path) -> dict:
    data = f.read_bytes()
    return {"path": str(f), "ino": f.stat().st_ino, "size": len(data),
            "sha": hashlib.sha256(data).hexdigest(), "listing": sorted(os.listdir(f.parent)), "pid": os.getpid()}


@bentohost.service(workers=1)
class UploadSpool:
    @bentohost.api
    def info(self, f: Path) -> dict:
        return describe(f)

    @bentohost.api
    def hold(self, f: Path, token: str) -> dict:
        HELD[token] = open(f, "rb")  # noqa: SIM115 - kept open past the request on purpose
        return describe(f)

    @bentohost.api
    def map(self, f: Path, token: str) -> dict:
        import mmap
        with open(f, "rb") as fh:
            HELD[token] = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
        return describe(f)

    @bentohost.api
    def held(self, token: str) -> str:
        kept = HELD[token]
        kept.seek(0)
        return hashlib.sha256(kept.read()).hexdigest()

    @bentohost.api
    def link(self, f: Path, dest: str) -> dict:
        os.link(f, dest)
        return describe(f)

    @bentohost.api
    def move(self, f: Path, dest: str) -> dict:
        out = describe(f)
        shutil.move(f, dest)
        return out

    @bentohost.api
    def litter(self, f: Path) -> dict:
        (f.parent / "extra.txt").write_text("left by the service")
        (f.parent / "sub").mkdir()
        (f.parent / "sub" / "deeper.txt").write_text("and here")
        return describe(f)
