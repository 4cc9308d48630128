"""/docs.json: OpenAPI 3.0.2 that validates with openapi-spec-validator (reference section 4.2)."""

from __future__ import annotations

import pytest

from bentohost._schema import to_openapi

validator = pytest.importorskip("openapi_spec_validator")


def test_to_openapi_conversions():
    assert to_openapi({"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}) == {
        "type": "integer", "nullable": True, "default": None
    }
    assert to_openapi({"const": "a"}) == {"enum": ["a"]}
    assert to_openapi({"type": "number", "exclusiveMinimum": 0}) == {
        "type": "number", "minimum": 0, "exclusiveMinimum": True
    }
    assert to_openapi({"$ref": "#/$defs/Item"}) == {"$ref": "#/components/schemas/Item"}
    assert to_openapi({"type": "tensor", "format": "numpy-array", "dtype": "int32", "shape": [2, 2]}) == {
        "type": "array", "items": {"type": "array", "items": {"type": "integer"}}
    }
    assert to_openapi({"type": "file", "format": "image", "pil": True}) == {"type": "string", "format": "binary"}
    assert to_openapi({"type": "dataframe", "orient": "records"}) == {"type": "array", "items": {"type": "object"}}
    assert to_openapi({"type": "array", "prefixItems": [{"type": "integer"}]}) == {"type": "array", "items": {}}


@pytest.mark.parametrize("target", ["io_types.py:IOTypes", "stream_svc.py:StreamSvc", "ctx_svc.py:CtxSvc", "basic.py:Basic"])
def test_docs_json_validates(server_factory, target):
    if target.startswith("io_types"):
        pytest.importorskip("pandas")
        pytest.importorskip("PIL")
    srv = server_factory(target, "--workers", "1")
    r = srv.get("/docs.json")
    assert r.status_code == 200
    doc = r.json()
    validator.validate(doc)
    assert doc["openapi"] == "3.0.2"
    assert doc["servers"] == [{"url": "."}]
    assert doc["info"]["contact"] == {"name": "BentoML Team", "email": "contact@bentoml.com"}
    assert {"/healthz", "/livez", "/readyz", "/metrics"} <= set(doc["paths"])
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        assert doc["components"]["schemas"][name]["required"] == ["error"]
    if target.startswith("io_types"):
        op = doc["paths"]["/file_in"]["post"]
        assert op["operationId"] == "IOTypes__file_in" and op["x-bentoml-name"] == "file_in"
        mp = op["requestBody"]["content"]["multipart/form-data"]
        assert mp["encoding"] == {"note": {"contentType": "application/json"}, "n": {"contentType": "application/json"}}
        assert set(op["responses"]) == {"200", "400", "404", "500"}
        assert "application/json" in doc["paths"]["/scalars"]["post"]["requestBody"]["content"]
        assert "text/plain" in doc["paths"]["/text_root"]["post"]["requestBody"]["content"]
        x = doc["components"]["schemas"]["array__Input"]["properties"]["x"]
        assert x["type"] == "array" and x["items"]["items"]["type"] == "number"
        assert "Person" in doc["components"]["schemas"] or "Address" in doc["components"]["schemas"]
