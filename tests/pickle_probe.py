"""Helpers for the signed-pickle tests: a pickle that leaves a file behind if it is
ever unpickled, and a request signature made the way a graph's caller makes it."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path


class CreatesFile:
    """Unpickling this creates ``path``: proof that a body was (not) unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def sign(key: bytes, route: str, body: bytes, lengths: str = "", t: int | None = None) -> str:
    """``X-Bentohost-Signature`` for ``POST route`` with ``body`` (bentohost/_signing.py)."""
    t = int(time.time()) if t is None else t
    mac = hmac.new(key, f"{t}\nPOST {route}\n{lengths}\n".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"
