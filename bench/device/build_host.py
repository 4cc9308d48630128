#!/usr/bin/env python3
"""Build bentohost/_bin/bentohost-host on the GPU machine, with that machine's python3.

The host embeds the interpreter it was linked with, and the GPU machine's Python (3.12, the
one with torch) is not the dev machine's, so the binary cannot travel: it is built there by
setup.py's own build_host(), from the headers, libraries and llhttp sources that
bench/device/prepare.sh put in .device/ (gcc finds the headers through CPATH and the
libraries through LIBRARY_PATH, which bench/device/run.sh sets). Two of setup.py's settings
are changed for that machine only: llhttp's folders (setup.py reads /usr/share, where
node-llhttp is not installed there) and -Werror (another gcc may warn where ours does not;
the dev machine's build keeps -Werror).

    python3 bench/device/build_host.py .device
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_setup() -> dict:
    """setup.py's globals, without building anything (`setup.py --name` only prints the name)."""
    argv = sys.argv
    sys.argv = [str(ROOT / "setup.py"), "--name"]
    try:
        ns = runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        sys.argv = argv
    # the functions' own globals, not run_path's copy: build_host() reads these
    return ns["build_host"].__globals__


def main() -> int:
    device = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / ".device").resolve()
    g = load_setup()
    g["LLHTTP_SRC"] = device / "llhttp" / "src"
    g["LLHTTP_INCLUDE"] = device / "llhttp" / "include"
    g["WARNINGS"] = [w for w in g["WARNINGS"] if w != "-Werror"]
    out = g["build_host"](ROOT / "bentohost" / "_bin" / g["HOST_NAME"])
    print(f"built {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
