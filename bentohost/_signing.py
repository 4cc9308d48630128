"""HMAC signatures on pickle bodies between services that share a secret.

Pickle runs code chosen by its sender, so it is accepted over TCP only when signed
with a key both sides hold (the per-run key of a graph's loopback pools, or the
graph secret given with ``--graph-secret-file``); the key itself never travels.

Request header ``X-Bentohost-Signature: t=<unix seconds>,v1=<hex>`` where
``v1 = HMAC-SHA256(key, "<t>\\n<METHOD> <target>\\n<buffer-lengths>\\n" + body)``.
A response in pickle carries ``t=<unix seconds>,v1=<hex>`` with
``v1 = HMAC-SHA256(key, "<t>\\nresponse <request's v1>\\n<buffer-lengths>\\n" + body)``,
so it is bound to the request it answers. A signature more than ``MAX_SKEW_S``
seconds away from the receiver's clock is refused (replays are possible within
that window: same call, same body). Signatures authenticate, they do not encrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

__all__ = [
    "SIGNATURE_HEADER",
    "MAX_SKEW_S",
    "SignatureError",
    "sign_request",
    "check_request",
    "sign_response",
    "check_response",
    "request_v1",
]

SIGNATURE_HEADER = "X-Bentohost-Signature"
#: how far a signature's time may be from the receiver's clock
MAX_SKEW_S = 300

Parts = Iterable["bytes | bytearray | memoryview"]


class SignatureError(Exception):
    """A missing, malformed, stale or wrong signature (the message says which)."""


def _digest(key: bytes, head: bytes, parts: Parts) -> str:
    mac = hmac.new(key, head, hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.hexdigest()


def _now(now: float | None) -> int:
    return int(time.time() if now is None else now)


def _parse(value: str | None) -> tuple[int, str]:
    if not value:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    fields: dict[str, str] = {}
    for item in value.split(","):
        name, sep, v = item.strip().partition("=")
        if sep:
            fields[name.strip()] = v.strip()
    try:
        t = int(fields["t"])
        v1 = fields["v1"]
    except (KeyError, ValueError):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header") from None
    return t, v1


def _check(key: bytes, value: str | None, head_of: str, buffer_lengths: str, body: Parts, now: float | None) -> str:
    t, v1 = _parse(value)
    skew = _now(now) - t
    if abs(skew) > MAX_SKEW_S:
        raise SignatureError(f"signature time is {skew:+d}s off (more than {MAX_SKEW_S}s): stale or clocks apart")
    expected = _digest(key, f"{t}\n{head_of}\n{buffer_lengths}\n".encode("latin-1"), body)
    if not hmac.compare_digest(expected, v1):
        raise SignatureError("signature does not match (another key, or the body was changed)")
    return v1


def sign_request(
    key: bytes, method: str, target: bytes, buffer_lengths: str, parts: Parts, now: float | None = None
) -> tuple[str, str]:
    """``(header value, v1)`` for a request; ``target`` is the request target's raw bytes."""
    t = _now(now)
    head = f"{t}\n{method} ".encode("latin-1") + target + f"\n{buffer_lengths}\n".encode("latin-1")
    v1 = _digest(key, head, parts)
    return f"t={t},v1={v1}", v1


def check_request(
    key: bytes, value: str | None, method: str, target: str, buffer_lengths: str, body: Parts,
    now: float | None = None,
) -> str:
    """The request's ``v1`` when ``value`` signs it with ``key``; else ``SignatureError``.
    ``target`` is as parsed from the head (latin-1: its raw bytes)."""
    return _check(key, value, f"{method} {target}", buffer_lengths, body, now)


def request_v1(value: str | None) -> str:
    """The ``v1`` of a request's signature header (already checked)."""
    return _parse(value)[1]


def sign_response(key: bytes, request_v1: str, buffer_lengths: str, parts: Parts, now: float | None = None) -> str:
    t = _now(now)
    head = f"{t}\nresponse {request_v1}\n{buffer_lengths}\n".encode("latin-1")
    return f"t={t},v1={_digest(key, head, parts)}"


def check_response(
    key: bytes, value: str | None, request_v1: str, buffer_lengths: str, body: Parts, now: float | None = None
) -> None:
    _check(key, value, f"response {request_v1}", buffer_lengths, body, now)
