"""Wires a worker's ``depends()`` to the C client: where each dependency runs, in
which format it is called, and whether this worker takes pickle itself.

| dependency | address | format |
|---|---|---|
| a pool of this graph (default) | Unix sockets in the runtime dir | pickle |
| a pool of this graph (``BENTOML_NO_UDS``) | 127.0.0.1 ports (``_links``) | pickle signed with the run's key |
| at a URL (``--depends``, ``depends(url=..., on=...)``) | that host | JSON; signed pickle given a graph secret |
| ``depends(url=...)`` without ``on=`` | that host | JSON, APIs from its ``/schema.json`` |

This worker accepts pickle unsigned when it is a pool on Unix sockets, signed with
the run's key when it is a pool on loopback TCP, signed with the graph secret on a
public port given one; else it answers pickle 415.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.parse
from typing import Any

from ._config import service_config
from ._dispatch import set_pickle_allowed, set_pickle_key
from ._io import APPLICATION_JSON
from ._links import Links
from ._loader import TargetError
from ._pickle import PICKLE
from ._remote import RemoteProxy, install_resolver
from ._schema_proxy import SchemaProxy
from ._service import Service
from ._transport import CallTransport, socket_paths

__all__ = ["connect_dependencies", "tcp_target"]

logger = logging.getLogger("bentohost")


def tcp_target(name: str, url: str) -> str:
    """``tcp://ip:port`` for the C client, from a dependency's ``http://host:port`` URL, or
    ``tls://ip:port#host`` from an ``https://`` one (the certificate must be for ``host``;
    it is verified against the system's CAs, SSL_CERT_FILE honoured). The name is looked
    up here, once, at start: the I/O thread never blocks on DNS."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise TargetError(f"dependency {name!r}: only http(s)://host:port URLs are supported, got {url!r}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parsed.hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetError(f"dependency {name!r}: cannot resolve {parsed.hostname!r}: {exc}") from None
    ip = infos[0][4][0]
    if parsed.scheme == "https":
        return f"tls://{ip}:{port}#{parsed.hostname}"
    return f"tcp://{ip}:{port}"


#: a dependency's C targets, body format (or SCHEMA) and signing key
Target = tuple[list[str], str, "bytes | None"]
#: the format of a ``depends(url=...)`` without ``on=``: JSON, APIs from /schema.json
SCHEMA = "schema"


def _accept_pickle(host: Any, links: Links) -> None:
    if getattr(host, "service_name", ""):  # a pool of the graph, on private sockets
        if links.private_key is not None:
            set_pickle_key(links.private_key)
        else:
            set_pickle_allowed(True)
    elif links.graph_secret is not None:  # the public port
        set_pickle_key(links.graph_secret)


def _targets(svc: Service[Any], graph: list[Service[Any]], links: Links) -> dict[str, Target]:
    runtime_dir = os.environ.get("BENTOHOST_RUNTIME_DIR")
    urls: dict[str, str] = json.loads(os.environ.get("BENTOHOST_DEPENDS") or "{}")
    local = {s.name for s in graph} if len(graph) > 1 else set()
    targets: dict[str, Target] = {}
    for dep in svc.dependencies.values():
        on = dep.on
        if on is None:
            if dep.url is not None:
                targets[dep.url] = ([tcp_target(dep.url, dep.url)], SCHEMA, None)
            continue
        url = urls.get(on.name) or dep.url
        if url is not None:
            addr = [tcp_target(on.name, url)]
            if links.graph_secret is not None:
                targets[on.name] = (addr, PICKLE, links.graph_secret)
            else:
                targets[on.name] = (addr, APPLICATION_JSON, None)
        elif on.name in local and links.private_key is not None:
            if on.name not in links.addresses:
                raise TargetError(f"dependency {on.name!r}: no loopback address was handed to this worker")
            targets[on.name] = (links.addresses[on.name], PICKLE, links.private_key)
        elif on.name in local and runtime_dir is not None:
            targets[on.name] = (socket_paths(runtime_dir, on.name, service_config(on)["workers"]), PICKLE, None)
    return targets


def _schema_proxy(url: str, target: str, transport: CallTransport) -> SchemaProxy:
    """A ``depends(url=...)`` without ``on=``, its schema fetched now if the server is up."""
    address, _, tls_name = target[len("tcp://") :].partition("#")
    ip, _, port = address.rpartition(":")
    proxy = SchemaProxy(url, (ip, int(port)), urllib.parse.urlsplit(url).netloc, transport,
                        tls_name=tls_name or None)
    if not proxy.fetch():
        logger.warning("dependency %s: cannot read its /schema.json now (%s); it will be read on first use",
                       url, proxy.last_error)
    return proxy


def connect_dependencies(host: Any, svc: Service[Any], graph: list[Service[Any]], links: Links) -> CallTransport | None:
    """Register this worker's dependencies with the I/O thread (before ``publish``) and
    resolve ``depends()`` to proxies that call them over it."""
    _accept_pickle(host, links)
    targets = _targets(svc, graph, links)
    if not targets or not hasattr(host, "call"):
        return None
    ids = {name: host.add_dependency(name, paths) for name, (paths, _media, _key) in targets.items()}
    transport = CallTransport(host, ids)
    by_url = {
        url: _schema_proxy(url, paths[0], transport) for url, (paths, media, _key) in targets.items() if media == SCHEMA
    }

    def resolve(dependency: Any) -> Any:
        on = dependency.on
        if on is None:
            return by_url.get(dependency.url)
        if on.name not in ids:
            return None
        _paths, media, key = targets[on.name]
        return RemoteProxy(on, transport, media_type=media, signing_key=key)

    install_resolver(resolve)
    return transport
