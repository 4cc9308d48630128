"""BentoML's configuration file laid over one service's decorator config.

The C host reads ``BENTOML_CONFIG`` and ``BENTOML_CONFIG_OVERRIDES``
(``bh_yamlconf_load`` in csrc/common/yamlconf.c) into one checked object::

    {"defaults": {"traffic": {"timeout": 120}, ...},   # global keys written under services:
     "services": {"Model": {"workers": 2, ...}, ...}}  # services.<Name>:, overrides merged in

:func:`apply` computes one service's config from it the way BentoML 1.4 does
(configuration/containers.py, then v2 ``finalize_config``): the decorator's
``svc.config``, then that service's entry from the file and the overrides on top,
and the global defaults *under* the result. So ``services.traffic.timeout`` in the
file fills in a timeout the decorator left unset but never replaces one the decorator
gave; only ``services.<Name>.traffic.timeout`` does. Maps (``traffic``,
``resources``, ``logging``, ...) merge key by key at every depth; anything else
(numbers, strings, lists such as ``envs``, ``None``) replaces.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["apply", "deep_merge"]


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``base`` with ``over`` laid on it. Where both hold a map under a key
    the two merge the same way; otherwise ``over``'s value wins. Neither input changes,
    and the result shares no mutable value with them."""
    out: dict[str, Any] = {key: copy.deepcopy(value) for key, value in base.items()}
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = deep_merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _section(merged: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = merged.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"configuration: {key!r} must be a mapping, got {type(value).__name__}")
    return value


def apply(config: Mapping[str, Any], name: str, merged: Mapping[str, Any]) -> dict[str, Any]:
    """Service ``name``'s config: ``config`` (its decorator's ``svc.config``) with
    ``merged["services"][name]`` over it and ``merged["defaults"]`` under it.

    ``merged`` is the object ``bh_yamlconf_load`` printed, as ``json.loads`` gives
    it. A service the file does not name gets the defaults only. Returns a new dict;
    ``config`` and ``merged`` are left as they were.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    if not isinstance(merged, Mapping):
        raise TypeError(f"merged configuration must be a mapping, got {type(merged).__name__}")
    defaults = _section(merged, "defaults")
    own = _section(merged, "services").get(name)
    if own is None:
        own = {}
    elif not isinstance(own, Mapping):
        raise TypeError(f"configuration: services.{name} must be a mapping, got {type(own).__name__}")
    return deep_merge(defaults, deep_merge(config, own))
