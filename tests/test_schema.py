"""/schema.json: the document BentoML clients read (reference section 4.1)."""

from __future__ import annotations

import pytest

pytest.importorskip("pandas")
pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def srv(module_server_factory):
    return module_server_factory("io_types.py:IOTypes", "--workers", "1")


@pytest.fixture(scope="module")
def schema(srv):
    r = srv.get("/schema.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def routes(schema):
    return {r["name"]: r for r in schema["routes"]}


def test_top_level(schema):
    assert schema["name"] == "IOTypes"
    assert schema["type"] == "service"
    assert schema["description"] == "A service that covers every IO type."
    assert schema["paths"]["/scalars"] == {"mounted": False}
    assert set(schema) == {"name", "type", "description", "paths", "routes"}
    for r in schema["routes"]:
        assert set(r) == {"name", "route", "batchable", "is_task", "input", "output"}
        assert r["is_task"] is False
        assert "$defs" not in str(r) and "$ref" not in str(r)


def test_object_input(schema):
    inp = routes(schema)["scalars"]["input"]
    assert inp["title"] == "Input" and inp["type"] == "object"
    assert inp["properties"]["s"] == {"title": "S", "type": "string"}
    assert inp["properties"]["d"] == {"additionalProperties": True, "title": "D", "type": "object"}
    assert inp["required"] == ["s", "i", "f", "b", "l", "d"]
    assert "root_input" not in inp


def test_nested_models_inlined(schema):
    p = routes(schema)["person"]["input"]["properties"]["p"]
    assert p["properties"]["address"]["properties"]["city"] == {"title": "City", "type": "string"}
    out = routes(schema)["person"]["output"]
    assert out["title"] == "PersonIODescriptor" and "address" in out["properties"]  # BentoML: f"{Model}IODescriptor"


def test_root_inputs(schema):
    r = routes(schema)
    assert r["text_root"]["input"]["type"] == "string" and r["text_root"]["input"]["root_input"] is True
    assert r["bytes_root"]["input"]["format"] == "binary"
    assert r["file_root"]["input"]["type"] == "file" and r["file_root"]["input"]["root_input"] is True
    assert r["image_root"]["input"]["pil"] is True


def test_custom_types(schema):
    r = routes(schema)
    assert r["array"]["input"]["properties"]["x"] == {
        "type": "tensor", "format": "numpy-array", "dtype": "float32", "shape": [2, 3], "dim": 6, "title": "X"
    }
    assert r["ndarray_root"]["input"]["dtype"] == "int16"
    assert r["frame_columns"]["input"]["properties"]["df"]["orient"] == "columns"
    assert r["frame_columns"]["input"]["properties"]["df"]["columns"] == ["a", "b"]
    assert r["frame_records"]["output"] == {"type": "dataframe", "orient": "records"}
    assert r["image"]["input"]["properties"]["img"] == {"type": "file", "format": "image", "pil": True, "title": "Img"}
    f = r["file_in"]["input"]["properties"]["f"]
    assert f["type"] == "file" and f["format"] == "text" and f["content_type"] == "text/*"
    assert r["files_in"]["input"]["properties"]["files"]["items"] == {"type": "file", "format": "binary"}


def test_outputs(schema):
    r = routes(schema)
    assert r["text_root"]["output"] == {"type": "string"}
    assert r["html"]["output"] == {"type": "string", "media_type": "text/html"}
    assert r["jpeg_out"]["output"]["media_type"] == "image/jpeg"
    assert r["batch_double"]["batchable"] is True
    assert r["batch_double"]["output"] == {"items": {"type": "integer"}, "type": "array"}


def test_stream_output(module_server_factory):
    s = module_server_factory("stream_svc.py:StreamSvc", "--workers", "1")
    r = {x["name"]: x for x in s.get("/schema.json").json()["routes"]}
    assert r["ticks"]["output"] == {"type": "string", "is_stream": True, "media_type": "text/event-stream"}
    assert r["typed"]["output"]["media_type"] == "text/plain"
