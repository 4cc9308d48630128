"""Served from a fresh virtualenv: reports where Python and bentohost come from."""

import os
import sys

import bentohost


@bentohost.service
class Probe:
    @bentohost.api
    def where(self, text: str = "") -> dict:
        return {
            "echo": text,
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
            "executable": sys.executable,
            "bentohost_file": bentohost.__file__,
            "worker_index": bentohost.server_context.worker_index,
            "pid": os.getpid(),
        }
