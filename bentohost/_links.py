"""Where the pools of this worker's graph listen, and the keys that guard pickle.

By default each dependency worker listens on a Unix socket in the supervisor's
private runtime directory (``BENTOHOST_RUNTIME_DIR``, mode 0700): only this user
can connect, so pickle is accepted there unsigned.

With ``BENTOML_NO_UDS`` (``serve --no-uds``) they listen on 127.0.0.1 instead,
which every local user can reach: the supervisor makes a random key for the run
(``BENTOHOST_PRIVATE_KEY``) and pickle on those ports must be signed with it
(``_signing``). Their ports are ephemeral. The entry's first worker describes the
graph before any dependency pool exists, and must already know where it will
call: it binds one port per dependency worker (``SO_REUSEPORT``, never listening)
and names them in the graph's description; the supervisor binds the same ports,
listens on them, and hands every worker forked after that the addresses in
``BENTOHOST_PRIVATE_ADDRS`` (JSON ``{service: ["tcp://127.0.0.1:port", ...]}``).
The reserved sockets stay open in that worker, so no other user can take a port
in between (the kernel lets only the same user share a ``SO_REUSEPORT`` port).

``BENTOHOST_GRAPH_SECRET`` (``serve --graph-secret-file``) is the key shared with
services on other hosts: signed pickle on the public port and to URL dependencies.
Both keys are taken out of ``os.environ`` once read, so that user code and the
processes it starts do not inherit them.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from ._config import service_config
from ._service import Service

__all__ = [
    "PRIVATE_KEY_ENV",
    "PRIVATE_ADDRS_ENV",
    "GRAPH_SECRET_ENV",
    "Links",
    "graph_links",
]

PRIVATE_KEY_ENV = "BENTOHOST_PRIVATE_KEY"
PRIVATE_ADDRS_ENV = "BENTOHOST_PRIVATE_ADDRS"
GRAPH_SECRET_ENV = "BENTOHOST_GRAPH_SECRET"

#: the reporter's reserved ports: kept open for the life of the worker
_reserved: list[socket.socket] = []


def _take(name: str) -> bytes | None:
    value = os.environ.pop(name, None)
    return value.encode() if value else None


@dataclass
class Links:
    """What one worker knows about reaching its graph."""

    #: signs pickle on the loopback TCP pools (None: they are Unix sockets)
    private_key: bytes | None = None
    #: signs pickle to and from other hosts (None: JSON there, 415 here)
    graph_secret: bytes | None = None
    #: loopback TCP mode: each local dependency's worker addresses
    addresses: dict[str, list[str]] = field(default_factory=dict)
    #: ports this worker reserved, for the graph's description (the reporter only)
    ports: dict[str, list[int]] | None = None


def _reserve(graph: list[Service[Any]]) -> dict[str, list[int]]:
    ports: dict[str, list[int]] = {}
    for dep in graph[1:]:
        for _ in range(service_config(dep)["workers"]):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("127.0.0.1", 0))
            _reserved.append(sock)
            ports.setdefault(dep.name, []).append(sock.getsockname()[1])
    return ports


def graph_links(host: Any, graph: list[Service[Any]]) -> Links:
    """This worker's links; ``graph`` is the graph as this worker serves it (one
    service when its dependencies run elsewhere)."""
    links = Links(private_key=_take(PRIVATE_KEY_ENV), graph_secret=_take(GRAPH_SECRET_ENV))
    if links.private_key is None or len(graph) < 2:
        return links
    given = os.environ.get(PRIVATE_ADDRS_ENV)
    if given:
        links.addresses = {str(k): [str(a) for a in v] for k, v in json.loads(given).items()}
    elif getattr(host, "reporter", False) and not getattr(host, "service_name", ""):
        links.ports = _reserve(graph)
        links.addresses = {
            name: [f"tcp://127.0.0.1:{p}" for p in ports] for name, ports in links.ports.items()
        }
    return links
