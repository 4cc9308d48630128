"""The files of a project a build takes: BentoML's ``include``/``exclude`` and ``.bentoignore``.

Patterns are gitignore's (what BentoML reads them as): ``*`` and ``?`` stay within a path
component, ``**`` crosses them, a leading ``/`` (or any ``/`` inside) anchors a pattern at
the project's root, otherwise it matches at any depth, a trailing ``/`` matches directories
only, a directory that matches takes everything under it, ``!`` re-includes, and the last
pattern that matches a path decides. A file is taken when an ``include`` pattern takes it
and neither ``exclude`` nor a ``.bentoignore`` (which applies to its own directory and those
below) drops it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["PathSpec", "select_files", "ALWAYS_EXCLUDED"]

#: never worth shipping in an image
ALWAYS_EXCLUDED = (".git/", "__pycache__/", "*.py[cod]", ".venv/", ".bentohost/")


def _translate(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if body.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = body.find("]", i + 2)
            if end < 0:
                out.append(re.escape(c))
            else:
                inner = body[i + 1:end]
                if inner.startswith("!"):
                    inner = "^" + inner[1:]
                out.append("[" + inner.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < len(body):
            i += 1
            out.append(re.escape(body[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class PathSpec:
    """Gitignore-style patterns over ``/``-separated paths relative to one directory."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.rules: list[tuple[re.Pattern[str], bool]] = []
        for raw in patterns:
            pattern = raw.rstrip("\n").rstrip() if not raw.endswith("\\ ") else raw
            if not pattern or pattern.startswith("#"):
                continue
            negate = pattern.startswith("!")
            if negate:
                pattern = pattern[1:]
            dir_only = pattern.endswith("/")
            pattern = pattern.rstrip("/")
            if not pattern:
                continue
            anchored = "/" in pattern
            body = _translate(pattern.lstrip("/"))
            prefix = "" if anchored else "(?:.*/)?"
            # a matching directory takes what is under it; a directory-only pattern only that
            suffix = "/.*" if dir_only else "(?:/.*)?"
            self.rules.append((re.compile(f"^{prefix}{body}{suffix}$", re.DOTALL), not negate))

    def decides(self, path: str) -> bool | None:
        """True (matched), False (re-included by ``!``) or None (no pattern matched)."""
        verdict: bool | None = None
        for regex, positive in self.rules:
            if regex.match(path):
                verdict = positive
        return verdict

    def matches(self, path: str) -> bool:
        return bool(self.decides(path))


def _read_ignore(directory: Path) -> PathSpec | None:
    try:
        text = (directory / ".bentoignore").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return PathSpec(text.splitlines())


def select_files(root: Path, include: list[str], exclude: list[str], skip: Path | None = None) -> Iterator[str]:
    """The project's files to ship, as relative ``/`` paths in walk order (symlinked directories are
    not followed; ``skip`` is a directory never walked, e.g. the build's own output)."""
    inc, exc = PathSpec(include), PathSpec([*ALWAYS_EXCLUDED, *exclude])
    ignores: list[tuple[str, PathSpec]] = []  # (directory prefix, its .bentoignore)

    def dropped(rel: str) -> bool:
        if exc.matches(rel):
            return True
        for prefix, spec in ignores:
            if rel.startswith(prefix) and spec.matches(rel[len(prefix):]):
                return True
        return False

    skip_real = os.path.realpath(skip) if skip is not None else None
    for current, dirs, files in os.walk(root):
        here = Path(current)
        rel_dir = here.relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        spec = _read_ignore(here)
        if spec is not None:
            ignores.append((prefix, spec))
        # a dropped directory drops all under it (as in git): never walked
        dirs[:] = sorted(d for d in dirs if not dropped(prefix + d + "/.")
                         and os.path.realpath(here / d) != skip_real)
        for name in sorted(files):
            rel = prefix + name
            if inc.matches(rel) and not dropped(rel):
                yield rel
