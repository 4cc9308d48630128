"""Lifecycle hooks (``@on_startup`` / ``@on_shutdown``) as the worker runs them."""

from __future__ import annotations

import inspect

from ._context import Context


async def run_hooks(instance: object, names: list[str]) -> None:
    """Run lifecycle hooks in order; each may be sync or async and may take a ``ctx``."""
    for name in names:
        hook = getattr(instance, name)
        try:
            nparams = len(inspect.signature(hook).parameters)
        except (TypeError, ValueError):
            nparams = 0
        result = hook(Context()) if nparams >= 1 else hook()
        if inspect.isawaitable(result):
            await result
