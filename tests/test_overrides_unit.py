"""bentohost._overrides.apply: the configuration file's object (as bh_yamlconf_load
prints it) laid over one service's decorator config, in BentoML 1.4's order."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bentohost._overrides import apply, deep_merge

DECORATOR: dict[str, Any] = {
    "workers": 2,
    "traffic": {"timeout": 30, "max_concurrency": 4},
    "resources": {"cpu": "2"},
    "envs": [{"name": "A", "value": "1"}],
}


def merged(defaults: dict[str, Any] | None = None, **services: dict[str, Any]) -> dict[str, Any]:
    return {"defaults": defaults or {}, "services": services}


def test_nothing_configured_gives_an_equal_copy() -> None:
    out = apply(DECORATOR, "M", merged())
    assert out == DECORATOR
    assert out is not DECORATOR and out["traffic"] is not DECORATOR["traffic"]
    assert apply({}, "M", {}) == {}


def test_the_service_entry_replaces_scalars() -> None:
    out = apply(DECORATOR, "M", merged(M={"workers": 8, "threads": 3}))
    assert out["workers"] == 8 and out["threads"] == 3


def test_maps_merge_key_by_key() -> None:
    out = apply(DECORATOR, "M", merged(M={"traffic": {"timeout": 5}, "resources": {"gpu": 1}}))
    assert out["traffic"] == {"timeout": 5, "max_concurrency": 4}
    assert out["resources"] == {"cpu": "2", "gpu": 1}


def test_maps_merge_at_every_depth() -> None:
    cfg = {"logging": {"access": {"enabled": True, "format": {"trace_id": "032x"}}}}
    out = apply(cfg, "M", merged(M={"logging": {"access": {"format": {"span_id": "016x"}}}}))
    assert out == {"logging": {"access": {"enabled": True, "format": {"trace_id": "032x", "span_id": "016x"}}}}


def test_lists_replace() -> None:
    out = apply(DECORATOR, "M", merged(M={"envs": [{"name": "B", "value": "2"}]}))
    assert out["envs"] == [{"name": "B", "value": "2"}]


def test_none_replaces_and_a_map_replaces_a_scalar() -> None:
    out = apply(DECORATOR, "M", merged(M={"traffic": None, "workers": {"odd": 1}}))
    assert out["traffic"] is None and out["workers"] == {"odd": 1}
    out = apply({"traffic": None}, "M", merged(M={"traffic": {"timeout": 1}}))
    assert out["traffic"] == {"timeout": 1}


def test_defaults_fill_only_what_is_unset() -> None:
    """BentoML merges the global keys under each service (v2 finalize_config): a
    default never beats the decorator or the service's own entry."""
    defaults = {"workers": 6, "traffic": {"timeout": 120, "concurrency": 16}, "batching": {"enabled": True}}
    out = apply(DECORATOR, "M", merged(defaults))
    assert out["workers"] == 2
    assert out["traffic"] == {"timeout": 30, "max_concurrency": 4, "concurrency": 16}
    assert out["batching"] == {"enabled": True}
    out = apply({}, "M", merged(defaults, M={"traffic": {"timeout": 7}}))
    assert out == {"workers": 6, "traffic": {"timeout": 7, "concurrency": 16}, "batching": {"enabled": True}}


def test_the_service_entry_beats_the_defaults() -> None:
    out = apply({}, "M", merged({"workers": 6}, M={"workers": 1}))
    assert out == {"workers": 1}


def test_other_services_do_not_apply() -> None:
    out = apply(DECORATOR, "M", merged(Other={"workers": 9}))
    assert out == DECORATOR


def test_an_unnamed_service_gets_the_defaults() -> None:
    out = apply({}, "Unnamed", merged({"resources": {"gpu": 1}}, M={"workers": 9}))
    assert out == {"resources": {"gpu": 1}}


def test_empty_or_null_sections() -> None:
    assert apply(DECORATOR, "M", {"defaults": None, "services": None}) == DECORATOR
    assert apply(DECORATOR, "M", {"services": {"M": None}}) == DECORATOR
    assert apply(DECORATOR, "M", {"services": {"M": {}}}) == DECORATOR


def test_inputs_are_left_alone() -> None:
    cfg = copy.deepcopy(DECORATOR)
    m = merged({"traffic": {"concurrency": 1}}, M={"traffic": {"timeout": 5}, "envs": [{"name": "B"}]})
    m_before = copy.deepcopy(m)
    out = apply(cfg, "M", m)
    out["traffic"]["timeout"] = 0
    out["envs"].append({"name": "C"})
    assert cfg == DECORATOR and m == m_before


def test_the_result_shares_nothing_mutable() -> None:
    m = merged(M={"resources": {"gpu": 1}})
    out = apply({}, "M", m)
    out["resources"]["gpu"] = 2
    assert m["services"]["M"]["resources"] == {"gpu": 1}


@pytest.mark.parametrize(
    "bad",
    [
        {"defaults": []},
        {"services": "M"},
        {"services": {"M": [1]}},
        {"services": {"M": 3}},
    ],
)
def test_malformed_merged_objects_raise(bad: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        apply(DECORATOR, "M", bad)


def test_non_mappings_raise() -> None:
    with pytest.raises(TypeError):
        apply([], "M", merged())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        apply({}, "M", [])  # type: ignore[arg-type]


def test_deep_merge_alone() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    over = {"a": {"c": [2], "e": {"f": None}}, "g": 2}
    assert deep_merge(base, over) == {"a": {"b": 1, "c": [2], "e": {"f": None}}, "d": 1, "g": 2}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1}


def test_service_config_reads_the_result() -> None:
    """What bentohost/_config.py's service_config does with the keys afterwards: the
    merged dict is a valid svc.config (None values fall back to the defaults)."""
    from bentohost import _config
    from bentohost._service import Service

    class Inner:
        pass

    svc = Service(Inner, name="M", config={"traffic": {"timeout": 10}})
    svc.config = apply(svc.config, "M", merged({"traffic": {"max_concurrency": 3}}, M={"workers": 2}))
    cfg = _config.service_config(svc)
    assert cfg["workers"] == 2
    assert cfg["traffic"] == {"timeout": 10.0, "max_concurrency": 3, "concurrency": None}
