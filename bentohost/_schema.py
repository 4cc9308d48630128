"""Discovery documents: ``/schema.json`` (what BentoML clients read) and ``/docs.json`` (OpenAPI 3.0.2).

Both are built once per worker, before ``publish``, and served from memory by C.
"""

from __future__ import annotations

import copy
import json
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any, get_args, get_origin

from pydantic import BaseModel, TypeAdapter

from ._dispatch import Endpoint
from ._io import APPLICATION_JSON
from ._service import Service
from ._tasks import TASK_STATUS_SCHEMA, openapi_task_paths
from ._types import adapt, classify, content_type_of, strip_annotated

__all__ = ["service_schema", "openapi_spec", "flatten_schema", "to_openapi"]

_STREAM_ORIGINS = (Generator, Iterator, AsyncGenerator, AsyncIterator, typing.Generator, typing.Iterator)


# --------------------------------------------------------------------------- JSON schema helpers


def flatten_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline every ``#/$defs/...`` reference and drop ``$defs`` (recursive models stay ``object``)."""
    defs = schema.get("$defs", {})

    def walk(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref[len("#/$defs/") :]
                if name in stack or name not in defs:
                    return {"type": "object"}
                inlined = walk(defs[name], (*stack, name))
                extra = {k: walk(v, stack) for k, v in node.items() if k != "$ref"}
                return {**inlined, **extra}
            return {k: walk(v, stack) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v, stack) for v in node]
        return node

    return walk(schema, ())  # type: ignore[no-any-return]


def _model_schema(model: type[BaseModel] | None) -> dict[str, Any]:
    if model is None:
        return {"properties": {}, "title": "Input", "type": "object"}
    try:
        return model.model_json_schema(mode="validation")
    except Exception:  # noqa: BLE001 - arbitrary types without a schema
        return {"title": model.__name__, "type": "object"}


def output_item_type(ret: Any) -> tuple[Any, bool]:
    """``(item type, is_stream)`` of a return annotation (generators unwrapped)."""
    base = strip_annotated(ret)
    origin = get_origin(base)
    if origin in _STREAM_ORIGINS:
        args = get_args(base)
        return (args[0] if args else Any), True
    return ret, False


def _type_schema(ann: Any) -> dict[str, Any]:
    if ann is Any or ann is None:
        return {}
    base = strip_annotated(ann)
    if isinstance(base, type) and issubclass(base, BaseModel):
        try:
            return base.model_json_schema(mode="validation")
        except Exception:  # noqa: BLE001
            return {"title": base.__name__, "type": "object"}
    try:
        schema = TypeAdapter(adapt(ann)).json_schema(mode="validation")
    except Exception:  # noqa: BLE001 - arbitrary user types
        return {}
    return schema


def _input_media_type(ep: Endpoint) -> str:
    spec = ep.input
    if spec.kind == "raw":
        return "text/plain"
    if spec.kind in ("root_file", "root_image"):
        if spec.root_ct:
            return spec.root_ct
        return "image/*" if spec.kind == "root_image" else "application/octet-stream"
    if spec.field_kinds:
        return "multipart/form-data"
    return APPLICATION_JSON


def _output_media_type(ep: Endpoint) -> str:
    if ep.is_stream:
        return ep.stream_ct.split(";", 1)[0]
    ret = ep.return_annotation
    declared = content_type_of(ret)
    if declared:
        return declared
    info = classify(ret)
    base = strip_annotated(ret)
    if info.kind == "image":
        return "image/*"
    if info.kind == "file":
        return info.content_type or "application/octet-stream"
    if base in (str, bytes):
        return "text/plain"
    return APPLICATION_JSON


def _descriptor_schema(ann: Any) -> dict[str, Any]:
    """Validation-mode schema of BentoML's ``ensure_io_descriptor(ann)`` model.

    A pydantic model ``M`` becomes ``MIODescriptor(IOMixin, M)`` (so its title is
    ``"MIODescriptor"`` unless ``M`` sets one in its config); anything else becomes an
    ``IORootModel`` whose schema is the bare ``TypeAdapter`` schema (no title, no default).
    """
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        try:
            schema = ann.model_json_schema(mode="validation")
        except Exception:  # noqa: BLE001
            return {"title": f"{ann.__name__}IODescriptor", "type": "object"}
        if not ann.model_config.get("title"):
            schema["title"] = f"{ann.__name__}IODescriptor"
        return schema
    return _type_schema(ann)


def _flatten_field(schema: dict[str, Any], defs: dict[str, Any], stack: tuple[str, ...] = ()) -> dict[str, Any]:
    """Port of BentoML's ``method._flatten_field``: the first ``allOf``/``anyOf`` alternative
    replaces the union (``Optional[int]`` becomes ``integer``), ``$ref`` is inlined, and only
    ``properties`` and ``items`` are walked (a recursive model stops at ``{"type": "object"}``)."""
    if "allOf" in schema:
        schema.update(schema.pop("allOf")[0])
    if "anyOf" in schema:
        schema.update(schema.pop("anyOf")[0])
    if "$ref" in schema:
        ref = schema.pop("$ref")[len("#/$defs/") :]
        if ref in stack or ref not in defs:
            schema.update({"type": "object"})
        else:
            schema.update(_flatten_field(copy.deepcopy(defs[ref]), defs, (*stack, ref)))
    elif schema.get("type") == "object" and "properties" in schema:
        for k, v in schema["properties"].items():
            schema["properties"][k] = _flatten_field(v, defs, stack)
    elif schema.get("type") == "array" and "items" in schema:
        schema["items"] = _flatten_field(schema["items"], defs, stack)
    return schema


def flatten_model_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """BentoML's ``_flatten_model_schema``: only schemas with ``properties`` are flattened;
    any other (e.g. ``list[Model]``) is published as is, ``$defs`` included."""
    schema = copy.deepcopy(schema)
    if not schema.get("properties"):
        return schema
    defs = schema.pop("$defs", {})
    return _flatten_field(schema, defs)


def _root_annotation(ep: Endpoint) -> Any:
    (ann,) = ep.input.fields.values() if ep.input.fields else (Any,)
    return ann


def input_schema(ep: Endpoint) -> dict[str, Any]:
    if ep.input.kind in ("none", "object"):
        return flatten_model_schema(_model_schema(ep.input.model))
    schema = _descriptor_schema(_root_annotation(ep))
    schema["root_input"] = True
    return flatten_model_schema(schema)


def output_schema(ep: Endpoint) -> dict[str, Any]:
    item, _ = output_item_type(ep.return_annotation)
    schema = flatten_model_schema(_descriptor_schema(item))
    if ep.is_stream:
        schema["is_stream"] = True
        schema["media_type"] = ep.stream_ct.split(";", 1)[0]
    else:
        declared = content_type_of(ep.return_annotation)
        if declared:
            schema["media_type"] = declared
    return schema


def sorted_endpoints(endpoints: list[Endpoint]) -> list[Endpoint]:
    """BentoML collects APIs with ``dir(service_class)``: sorted by attribute name."""
    return sorted(endpoints, key=lambda ep: getattr(ep.method.func, "__name__", ep.name))


# --------------------------------------------------------------------------- /schema.json


def service_schema(svc: Service[Any], endpoints: list[Endpoint]) -> dict[str, Any]:
    """The ``/schema.json`` document (BentoML 1.4 shape; keys whose value is None are dropped)."""
    routes = []
    paths: dict[str, Any] = {}
    for ep in sorted_endpoints(endpoints):
        route = svc.path_prefix + ep.method.route
        paths[route] = {"mounted": False}
        routes.append(
            {
                "name": ep.name,
                "route": route,
                "batchable": ep.method.batchable,
                "input": input_schema(ep),
                "output": output_schema(ep),
                "is_task": ep.method.is_task,
            }
        )
    doc: dict[str, Any] = {"name": svc.name, "type": "service", "routes": routes}
    if svc.description:
        doc["description"] = svc.description
    doc["paths"] = paths
    return doc


# --------------------------------------------------------------------------- /docs.json


_OAS_KEYS = frozenset(
    {
        "title", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
        "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxProperties", "minProperties",
        "required", "enum", "type", "not", "allOf", "oneOf", "anyOf", "items", "properties",
        "additionalProperties", "description", "format", "default", "nullable", "discriminator",
        "readOnly", "writeOnly", "example", "externalDocs", "deprecated", "$ref",
    }
)  # fmt: skip

_DTYPE_ITEM = {"int": "integer", "uin": "integer", "boo": "boolean"}


def _custom_to_openapi(node: dict[str, Any]) -> dict[str, Any] | None:
    t = node.get("type")
    if t == "tensor":
        dtype = str(node.get("dtype") or "")
        leaf: dict[str, Any] = {"type": _DTYPE_ITEM.get(dtype[:3], "number")}
        dims = len(node.get("shape") or ()) or 1
        out = leaf
        for _ in range(dims):
            out = {"type": "array", "items": out}
        return out
    if t == "dataframe":
        if node.get("orient") == "columns":
            return {"type": "object", "additionalProperties": {"type": "array", "items": {}}}
        return {"type": "array", "items": {"type": "object"}}
    if t == "file":
        return {"type": "string", "format": "binary"}
    return None


def to_openapi(node: Any, ref_prefix: str = "#/components/schemas/") -> Any:
    """Convert a pydantic (JSON Schema 2020-12) schema to an OpenAPI 3.0 schema object."""
    if isinstance(node, list):
        return [to_openapi(v, ref_prefix) for v in node]
    if not isinstance(node, dict):
        return node
    custom = _custom_to_openapi(node)
    if custom is not None:
        if "title" in node:
            custom["title"] = node["title"]
        if "description" in node:
            custom["description"] = node["description"]
        return custom
    out: dict[str, Any] = {}
    node = dict(node)
    # Optional[X]: anyOf [X, {type: null}] -> X + nullable
    for key in ("anyOf", "oneOf"):
        alts = node.get(key)
        if isinstance(alts, list) and any(isinstance(a, dict) and a.get("type") == "null" for a in alts):
            rest = [a for a in alts if not (isinstance(a, dict) and a.get("type") == "null")]
            del node[key]
            node["nullable"] = True
            if len(rest) == 1:
                only = rest[0]
                if "$ref" in only:
                    node.setdefault("allOf", []).append(only)
                else:
                    for k, v in only.items():
                        node.setdefault(k, v)
            elif rest:
                node[key] = rest
    if isinstance(node.get("type"), list):
        types = [t for t in node["type"] if t != "null"]
        if len(types) != len(node["type"]):
            node["nullable"] = True
        if len(types) == 1:
            node["type"] = types[0]
        else:
            node.pop("type")
            node["anyOf"] = [{"type": t} for t in types]
    if node.get("type") == "null":
        node.pop("type")
        node["nullable"] = True
        node["enum"] = [None]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "examples" in node:
        ex = node.pop("examples")
        if isinstance(ex, list) and ex:
            node.setdefault("example", ex[0])
    if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"] = node["exclusiveMinimum"]
        node["exclusiveMinimum"] = True
    if isinstance(node.get("exclusiveMaximum"), (int, float)) and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"] = node["exclusiveMaximum"]
        node["exclusiveMaximum"] = True
    if "prefixItems" in node:
        node.pop("prefixItems")
        node.setdefault("items", {})
    for k, v in node.items():
        if k not in _OAS_KEYS:
            continue
        if k == "$ref" and isinstance(v, str):
            out[k] = ref_prefix + v.rsplit("/", 1)[-1]
        elif k == "properties" and isinstance(v, dict):
            out[k] = {name: to_openapi(sub, ref_prefix) for name, sub in v.items()}
        elif k in ("items", "not", "additionalProperties") and isinstance(v, dict):
            out[k] = to_openapi(v, ref_prefix)
        elif k in ("allOf", "oneOf", "anyOf") and isinstance(v, list):
            out[k] = [to_openapi(a, ref_prefix) for a in v]
        elif k in ("default", "example", "enum"):
            out[k] = _jsonable(v)
        else:
            out[k] = v
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {}
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out.setdefault("allOf", []).insert(0, {"$ref": ref})
    return out


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def _component(schema: dict[str, Any], name: str, components: dict[str, Any]) -> dict[str, Any]:
    """Move ``$defs`` into components and return a ``$ref`` to ``name``."""
    schema = copy.deepcopy(schema)
    for def_name, sub in schema.pop("$defs", {}).items():
        components.setdefault(def_name, to_openapi(sub))
    components[name] = to_openapi(schema)
    return {"$ref": f"#/components/schemas/{name}"}


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["error"],
}


def _readme(svc: Service[Any], endpoints: list[Endpoint]) -> str:
    lines = [f"# {svc.name}", ""]
    if svc.description:
        lines += [svc.description.strip(), ""]
    lines.append("## APIs")
    lines.append("")
    for ep in endpoints:
        lines.append(f"- `POST {ep.method.route}`: `{ep.name}`")
    return "\n".join(lines)


def openapi_spec(svc: Service[Any], endpoints: list[Endpoint], version: str | None = None) -> dict[str, Any]:
    """The ``/docs.json`` document (OpenAPI 3.0.2)."""
    components: dict[str, Any] = {
        "InvalidArgument": copy.deepcopy(_ERROR_SCHEMA),
        "NotFound": copy.deepcopy(_ERROR_SCHEMA),
        "InternalServerError": copy.deepcopy(_ERROR_SCHEMA),
    }
    paths: dict[str, Any] = {}
    for probe in ("/healthz", "/livez", "/readyz", "/metrics"):
        paths[probe] = {
            "get": {
                "tags": ["Infrastructure"],
                "responses": {"200": {"description": "Successful Response"}},
            }
        }
    endpoints = sorted_endpoints(endpoints)
    for ep in endpoints:
        in_schema = _model_schema(ep.input.model)
        in_name = f"{ep.name}__Input"
        in_ref = _component(in_schema, in_name, components)
        item, _ = output_item_type(ep.return_annotation)
        out_schema = _type_schema(item)
        out_name = f"{ep.name}__Output"
        out_ref = _component(out_schema, out_name, components) if out_schema else {}
        in_mt = _input_media_type(ep)
        media: dict[str, Any] = {"schema": in_ref}
        if ep.input.kind not in ("none", "object"):
            # root inputs: the body is the bare value
            media = {"schema": to_openapi(flatten_schema(_model_schema(ep.input.model)))}
            media["schema"].pop("title", None)
            # BentoML also puts ``root_input: true`` here, which makes its docs.json invalid OpenAPI 3.0
        if in_mt == "multipart/form-data":
            media["encoding"] = {
                name: {"contentType": APPLICATION_JSON} for name in ep.input.fields if name not in ep.input.field_kinds
            }
        error_ref = "#/components/schemas/"
        op = {
            "tags": ["Service APIs"],
            "x-bentoml-name": ep.name,
            "description": (ep.method.func.__doc__ or "").strip(),
            "operationId": f"{svc.name}__{ep.name}",
            "requestBody": {"content": {in_mt: media}},
            "responses": {
                "200": {
                    "description": "Successful Response",
                    "content": {_output_media_type(ep): {"schema": out_ref}},
                },
                "400": {
                    "description": "Bad Request",
                    "content": {APPLICATION_JSON: {"schema": {"$ref": error_ref + "InvalidArgument"}}},
                },
                "404": {
                    "description": "Not Found",
                    "content": {APPLICATION_JSON: {"schema": {"$ref": error_ref + "NotFound"}}},
                },
                "500": {
                    "description": "Internal Server Error",
                    "content": {APPLICATION_JSON: {"schema": {"$ref": error_ref + "InternalServerError"}}},
                },
            },
        }
        paths[ep.method.route] = {"post": op}
        if ep.method.is_task:
            components.setdefault("TaskStatusResponse", copy.deepcopy(TASK_STATUS_SCHEMA))
            errors = {code: op["responses"][code] for code in ("400", "404", "500")}
            paths.update(
                openapi_task_paths(
                    svc.name, ep.name, ep.method.route, op["requestBody"], op["responses"]["200"], errors
                )
            )
    return {
        "openapi": "3.0.2",
        "info": {
            "title": svc.name,
            "description": _readme(svc, endpoints),
            "version": version or "None",
            "contact": {"name": "BentoML Team", "email": "contact@bentoml.com"},
        },
        "servers": [{"url": "."}],
        "tags": [
            {"name": "Service APIs", "description": "Service APIs"},
            {"name": "Infrastructure", "description": "Common infrastructure endpoints for observability"},
        ],
        "paths": paths,
        "components": {"schemas": components},
    }


def documents(svc: Service[Any], endpoints: list[Endpoint]) -> list[tuple[str, str, bytes]]:
    """``(path, content_type, body)`` of every document C serves from memory."""
    import os

    docs = [
        ("/schema.json", APPLICATION_JSON, json.dumps(service_schema(svc, endpoints), default=str).encode()),
        (svc.path_prefix + "/docs.json", APPLICATION_JSON, json.dumps(openapi_spec(svc, endpoints), default=str).encode()),
    ]
    index = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ui", "index.html")
    try:
        with open(index, "rb") as f:
            docs.append((svc.path_prefix + "/" if svc.path_prefix else "/", "text/html; charset=utf-8", f.read()))
    except OSError:
        pass
    return docs
