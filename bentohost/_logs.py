"""A worker's logs: the line format it shares with the C host, and stdout/stderr that keep lines whole.

The C host (``csrc/common/log.c``) writes ``2026-12-02T04:13:01.123Z INFO [Hello/2] message``,
or with ``--log-format json`` one object per line with the keys ``time``, ``level``,
``service``, ``worker`` and ``message``; :class:`LogFormatter` writes Python's records
the same way (a traceback joins the message), so one parser reads both.

Every worker inherits the supervisor's stdout and stderr, unbuffered (``pyhost.c`` turns
``buffered_stdio`` off), so ``print()`` used to write the text and its newline with two
``write(2)`` calls, and lines of several workers could interleave mid-line.
:class:`LineWriter` collects each thread's text into whole lines and writes them with
one ``write(2)``: on a pipe a line of up to ``PIPE_BUF`` (4096) bytes is atomic, a longer
one is still a single call (whole on files, in practice on terminals too).
"""

from __future__ import annotations

import io
import json
import logging
import os
import select
import sys
import threading
import time
from typing import Any

from ._context import server_context

__all__ = ["LineWriter", "LogFormatter", "install_line_writers", "flush_line_writers", "setup_logging",
           "log_to_root"]

#: a "line" that never ends goes out in pieces of this many characters
MAX_PENDING = 1 << 16


class LineWriter(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of a worker: whole lines, one ``write(2)`` each batch."""

    def __init__(self, original: Any) -> None:
        super().__init__()
        self._original = original  # kept (never closed): its descriptor is ours; ``buffer`` is its
        self._fd = original.fileno()
        self._encoding = getattr(original, "encoding", None) or "utf-8"
        self._errors = getattr(original, "errors", None) or "strict"
        self._pending: dict[int, str] = {}  # per thread: text after its last newline
        self._lock = threading.Lock()  # partial writes of one line never mix with another's

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    @property
    def errors(self) -> str:  # type: ignore[override]
        return self._errors

    @property
    def buffer(self) -> Any:
        """Bytes written here go out at once (the original stream is unbuffered)."""
        return self._original.buffer

    @property
    def line_buffering(self) -> bool:
        return True

    def reconfigure(self, *, encoding: str | None = None, errors: str | None = None, **_ignored: Any) -> None:
        self.flush()
        if encoding is not None:
            self._encoding = encoding
        if errors is not None:
            self._errors = errors

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        ident = threading.get_ident()
        text = self._pending.pop(ident, "") + s
        cut = text.rfind("\n") + 1
        if cut < len(text):
            if len(text) - cut > MAX_PENDING:
                cut = len(text)
            else:
                self._pending[ident] = text[cut:]
        if cut:
            self._emit(text[:cut])
        return len(s)

    def flush(self) -> None:
        text = self._pending.pop(threading.get_ident(), "")
        if text:
            self._emit(text)

    def flush_all(self) -> None:
        """Every thread's unfinished line (the worker is about to exit)."""
        for ident in list(self._pending):
            text = self._pending.pop(ident, "")
            if text:
                self._emit(text)

    def _emit(self, text: str) -> None:
        data = memoryview(text.encode(self._encoding, self._errors))
        with self._lock:
            while data:
                try:
                    n = os.write(self._fd, data)
                except BlockingIOError:  # someone made the shared descriptor non-blocking
                    select.select([], [self._fd], [], 1.0)
                    continue
                data = data[n:]


def install_line_writers() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(stream, LineWriter):
            continue
        try:
            stream.fileno()
        except (AttributeError, OSError, ValueError):
            continue  # not a real descriptor: leave it alone
        setattr(sys, name, LineWriter(stream))


def flush_line_writers() -> None:
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, LineWriter):
            try:
                stream.flush_all()
            except OSError:
                pass


class LogFormatter(logging.Formatter):
    """The C host's line format (text or JSON) for Python's records."""

    def __init__(self, json_lines: bool = False) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        service = server_context.service_name or "bentohost"
        worker = server_context.worker_index or 0
        if self.json_lines:
            line = {"time": when, "level": record.levelname, "service": service, "worker": worker,
                    "message": message}
            return json.dumps(line, ensure_ascii=False, separators=(",", ":"))
        return f"{when} {record.levelname} [{service}/{worker}] {message}"


def _handler(json_lines: bool) -> logging.Handler:
    handler = logging.StreamHandler()  # sys.stderr at each record: the LineWriter
    handler.setFormatter(LogFormatter(json_lines))
    handler.set_name("bentohost")
    return handler


def setup_logging(logger: logging.Logger, log_format: str) -> None:
    """bentohost's own records (tracebacks of failed requests) on stderr in the host's
    format, unless the user configured logging before the worker started."""
    if logger.handlers or logging.getLogger().handlers:
        return
    logger.addHandler(_handler(log_format == "json"))
    logger.setLevel(logging.INFO)


def log_to_root(logger: logging.Logger, log_format: str) -> None:
    """After the service's import: when it configured no logging itself, its own loggers'
    warnings and errors (the root's level) come out in the same format, not bare."""
    root = logging.getLogger()
    if root.handlers or not any(h.get_name() == "bentohost" for h in logger.handlers):
        return
    root.addHandler(_handler(log_format == "json"))
    logger.propagate = False  # its records are written once, by its own handler
