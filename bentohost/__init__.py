"""bentohost: serve BentoML-style service classes from a C host.

``import bentohost as bentoml`` runs a BentoML 1.4 service file. The public names
load lazily so that ``python -m bentohost`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, str]] = {
    "service": ("._service", "service"),
    "Service": ("._service", "Service"),
    "on_startup": ("._service", "on_startup"),
    "on_shutdown": ("._service", "on_shutdown"),
    "on_deployment": ("._service", "on_deployment"),
    "depends": ("._service", "depends"),
    "Dependency": ("._service", "Dependency"),
    "api": ("._api", "api"),
    "task": ("._api", "task"),
    "APIMethod": ("._api", "APIMethod"),
    "server_context": ("._context", "server_context"),
    "Context": ("._context", "Context"),
    "importing": ("._context", "importing"),
    "use_arguments": ("._args", "use_arguments"),
    "Field": ("pydantic", "Field"),
    "SyncHTTPClient": (".client", "SyncHTTPClient"),
    "AsyncHTTPClient": (".client", "AsyncHTTPClient"),
}

_SUBMODULES = frozenset({"exceptions", "validators"})

__all__ = [*_EXPORTS, *_SUBMODULES, "__version__"]

if TYPE_CHECKING:
    from pydantic import Field as Field

    from . import exceptions as exceptions
    from . import validators as validators
    from ._api import APIMethod as APIMethod
    from ._args import use_arguments as use_arguments
    from ._api import api as api
    from ._api import task as task
    from ._context import Context as Context
    from ._context import importing as importing
    from ._context import server_context as server_context
    from ._service import Dependency as Dependency
    from ._service import Service as Service
    from ._service import depends as depends
    from ._service import on_deployment as on_deployment
    from ._service import on_shutdown as on_shutdown
    from ._service import on_startup as on_startup
    from ._service import service as service
    from .client import AsyncHTTPClient as AsyncHTTPClient
    from .client import SyncHTTPClient as SyncHTTPClient


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module_name, attr = _EXPORTS[name]
        module = importlib.import_module(module_name, __name__)
        value = getattr(module, attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bentohost' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
