"""Wire compatibility with BentoML 1.4: documents, headers and bodies captured from a real
BentoML 1.4.39 server (``bentoml serve``) on the same service files, checked against bentohost alone.

The services are ``tests/services/compat_all.py`` (every IO type) and ``compat_edge.py``
(``path_prefix``, root models, declared text content types). The literals below were produced by
serving each file with BentoML and recording ``/schema.json``, the ``/docs.json`` operations, and
the status, content type, content disposition and body of each request in ``CASES_*``.

Deliberate differences (bentohost keeps its own behaviour; each has its own test below):

* a ``str`` returned from an API without a return annotation: BentoML sends it raw but labels it
  ``application/json`` (reference section 3.4 quirk); bentohost says ``text/plain; charset=utf-8``.
* malformed JSON for a non-string root input: BentoML answers 500 (its ``json.loads`` is outside
  validation); bentohost answers 400 with the validation body. An empty body for a root input with
  a default: both 400, but BentoML reports ``int_type`` where bentohost reports ``json_invalid``.
* an undecodable image as a root input: BentoML 500, bentohost 400.
* a root ``Annotated[Path, ContentType(ct)]`` body whose Content-Type does not match: BentoML ignores
  the declared type (200), bentohost rejects it (400) like BentoML does for multipart fields.
* ``Generator[Annotated[str, ContentType(ct)], ...]``: BentoML ignores the item-level content type
  (``text/event-stream``); bentohost uses it (an extension; see ``tests/test_streaming.py``).
* unknown paths: 404 ``{"error":"Not Found"}`` (application/json) from the C router, where Starlette
  sends ``Not Found`` as text/plain (not part of the Python runtime).
* ``__call__`` APIs: BentoML 1.4.39 refuses them ("API methods cannot start with '__'"); bentohost
  serves them at ``/`` (reference section 2.1), so they are not in these services.
"""

from __future__ import annotations

import io
import json
import re

import pytest

pytest.importorskip("pandas")
pytest.importorskip("PIL")
pytest.importorskip("numpy")

# Captured from BentoML 1.4.39 (`bentoml serve`) on tests/services/compat_all.py and compat_edge.py.
BML_SCHEMA_ALL = json.loads('{"name": "CompatAll", "type": "service", "routes": [{"name": "anything", "route": "/anything", "batchable": false, "input": {"properties": {"x": {"title": "X"}}, "required": ["x"], "title": "Input", "type": "object"}, "output": {}, "is_task": false}, {"name": "async_api", "route": "/async_api", "batchable": false, "input": {"properties": {"a": {"title": "A", "type": "integer"}, "b": {"default": 2, "title": "B", "type": "integer"}}, "required": ["a"], "title": "Input", "type": "object"}, "output": {"type": "integer"}, "is_task": false}, {"name": "bad_arg", "route": "/bad_arg", "batchable": false, "input": {"properties": {}, "title": "Input", "type": "object"}, "output": {"type": "string"}, "is_task": false}, {"name": "boom", "route": "/boom", "batchable": false, "input": {"properties": {}, "title": "Input", "type": "object"}, "output": {"type": "string"}, "is_task": false}, {"name": "constrained", "route": "/constrained", "batchable": false, "input": {"properties": {"q": {"maxLength": 5, "minLength": 2, "title": "Q", "type": "string"}, "k": {"default": 1, "exclusiveMaximum": 10, "exclusiveMinimum": 0, "title": "K", "type": "integer"}, "r": {"default": 0.5, "description": "a ratio", "maximum": 1.0, "minimum": 0.0, "title": "R", "type": "number"}}, "required": ["q"], "title": "Input", "type": "object"}, "output": {"type": "string"}, "is_task": false}, {"name": "count", "route": "/count", "batchable": false, "input": {"type": "integer", "root_input": true}, "output": {"type": "integer"}, "is_task": false}, {"name": "custom", "route": "/custom/path", "batchable": false, "input": {"properties": {"v": {"title": "V", "type": "integer"}}, "required": ["v"], "title": "Input", "type": "object"}, "output": {"type": "integer"}, "is_task": false}, {"name": "download", "route": "/download", "batchable": false, "input": {"properties": {"name": {"title": "Name", "type": "string"}, "content": {"default": "hi", "title": "Content", "type": "string"}}, "required": ["name"], "title": "Input", "type": "object"}, "output": {"format": "binary", "type": "file"}, "is_task": false}, {"name": "download_ct", "route": "/download_ct", "batchable": false, "input": {"properties": {"content": {"title": "Content", "type": "string"}}, "required": ["content"], "title": "Input", "type": "object"}, "output": {"content_type": "application/pdf", "format": "application", "type": "file", "media_type": "application/pdf"}, "is_task": false}, {"name": "file_root", "route": "/file_root", "batchable": false, "input": {"format": "binary", "type": "file", "root_input": true}, "output": {"type": "string"}, "is_task": false}, {"name": "frame_columns", "route": "/frame_columns", "batchable": false, "input": {"properties": {"df": {"columns": ["a", "b"], "orient": "columns", "title": "Df", "type": "dataframe"}}, "required": ["df"], "title": "Input", "type": "object"}, "output": {"orient": "columns", "type": "dataframe"}, "is_task": false}, {"name": "frame_records", "route": "/frame_records", "batchable": false, "input": {"properties": {"df": {"orient": "records", "title": "Df", "type": "dataframe"}}, "required": ["df"], "title": "Input", "type": "object"}, "output": {"orient": "records", "type": "dataframe"}, "is_task": false}, {"name": "image", "route": "/image", "batchable": false, "input": {"properties": {"img": {"format": "image", "pil": true, "title": "Img", "type": "file"}}, "required": ["img"], "title": "Input", "type": "object"}, "output": {"format": "image", "pil": true, "type": "file"}, "is_task": false}, {"name": "image_root", "route": "/image_root", "batchable": false, "input": {"format": "image", "pil": true, "type": "file", "root_input": true}, "output": {"additionalProperties": true, "type": "object"}, "is_task": false}, {"name": "mapping", "route": "/mapping", "batchable": false, "input": {"additionalProperties": {"type": "integer"}, "type": "object", "root_input": true}, "output": {"additionalProperties": {"type": "integer"}, "type": "object"}, "is_task": false}, {"name": "move", "route": "/move", "batchable": false, "input": {"properties": {"x": {"title": "X", "type": "number"}, "y": {"title": "Y", "type": "number"}}, "required": ["x", "y"], "title": "Input", "type": "object"}, "output": {"properties": {"x": {"title": "X", "type": "number"}, "y": {"title": "Y", "type": "number"}}, "required": ["x", "y"], "title": "MovedIODescriptor", "type": "object"}, "is_task": false}, {"name": "ndarray", "route": "/ndarray", "batchable": false, "input": {"properties": {"arr": {"dtype": "int64", "format": "numpy-array", "title": "Arr", "type": "tensor"}}, "required": ["arr"], "title": "Input", "type": "object"}, "output": {"dtype": "int64", "format": "numpy-array", "type": "tensor"}, "is_task": false}, {"name": "nothing", "route": "/nothing", "batchable": false, "input": {"properties": {}, "title": "Input", "type": "object"}, "output": {"type": "null"}, "is_task": false}, {"name": "numbers", "route": "/numbers", "batchable": false, "input": {"items": {"type": "number"}, "type": "array", "root_input": true}, "output": {"items": {"type": "number"}, "type": "array"}, "is_task": false}, {"name": "people", "route": "/people", "batchable": false, "input": {"properties": {"ps": {"items": {"properties": {"name": {"description": "full name", "minLength": 1, "title": "Name", "type": "string"}, "age": {"maximum": 150, "minimum": 0, "title": "Age", "type": "integer"}, "address": {"properties": {"city": {"title": "City", "type": "string"}, "zip": {"default": null, "title": "Zip", "type": "string"}}, "required": ["city"], "title": "Address", "type": "object"}, "tags": {"default": [], "items": {"type": "string"}, "title": "Tags", "type": "array"}}, "required": ["name", "age", "address"], "title": "Person", "type": "object"}, "title": "Ps", "type": "array"}}, "required": ["ps"], "title": "Input", "type": "object"}, "output": {"$defs": {"Address": {"properties": {"city": {"title": "City", "type": "string"}, "zip": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Zip"}}, "required": ["city"], "title": "Address", "type": "object"}, "Person": {"properties": {"name": {"description": "full name", "minLength": 1, "title": "Name", "type": "string"}, "age": {"maximum": 150, "minimum": 0, "title": "Age", "type": "integer"}, "address": {"$ref": "#/$defs/Address"}, "tags": {"default": [], "items": {"type": "string"}, "title": "Tags", "type": "array"}}, "required": ["name", "age", "address"], "title": "Person", "type": "object"}}, "items": {"$ref": "#/$defs/Person"}, "type": "array"}, "is_task": false}, {"name": "person", "route": "/person", "batchable": false, "input": {"properties": {"p": {"properties": {"name": {"description": "full name", "minLength": 1, "title": "Name", "type": "string"}, "age": {"maximum": 150, "minimum": 0, "title": "Age", "type": "integer"}, "address": {"properties": {"city": {"title": "City", "type": "string"}, "zip": {"default": null, "title": "Zip", "type": "string"}}, "required": ["city"], "title": "Address", "type": "object"}, "tags": {"default": [], "items": {"type": "string"}, "title": "Tags", "type": "array"}}, "required": ["name", "age", "address"], "title": "Person", "type": "object"}}, "required": ["p"], "title": "Input", "type": "object"}, "output": {"properties": {"name": {"description": "full name", "minLength": 1, "title": "Name", "type": "string"}, "age": {"maximum": 150, "minimum": 0, "title": "Age", "type": "integer"}, "address": {"properties": {"city": {"title": "City", "type": "string"}, "zip": {"default": null, "title": "Zip", "type": "string"}}, "required": ["city"], "title": "Address", "type": "object"}, "tags": {"default": [], "items": {"type": "string"}, "title": "Tags", "type": "array"}}, "required": ["name", "age", "address"], "title": "PersonIODescriptor", "type": "object"}, "is_task": false}, {"name": "raw_bytes", "route": "/raw_bytes", "batchable": false, "input": {"properties": {"data": {"format": "binary", "title": "Data", "type": "string"}}, "required": ["data"], "title": "Input", "type": "object"}, "output": {"format": "binary", "type": "string"}, "is_task": false}, {"name": "scalars", "route": "/scalars", "batchable": false, "input": {"properties": {"s": {"title": "S", "type": "string"}, "i": {"title": "I", "type": "integer"}, "f": {"title": "F", "type": "number"}, "b": {"title": "B", "type": "boolean"}, "l": {"items": {}, "title": "L", "type": "array"}, "d": {"additionalProperties": true, "title": "D", "type": "object"}}, "required": ["s", "i", "f", "b", "l", "d"], "title": "Input", "type": "object"}, "output": {"additionalProperties": true, "type": "object"}, "is_task": false}, {"name": "shout", "route": "/shout", "batchable": false, "input": {"type": "string", "root_input": true}, "output": {"type": "string"}, "is_task": false}, {"name": "stream", "route": "/stream", "batchable": false, "input": {"properties": {"n": {"default": 3, "title": "N", "type": "integer"}}, "title": "Input", "type": "object"}, "output": {"type": "string", "is_stream": true, "media_type": "text/event-stream"}, "is_task": false}, {"name": "tensor", "route": "/tensor", "batchable": false, "input": {"properties": {"arr": {"dim": 4, "dtype": "float32", "format": "numpy-array", "shape": [2, 2], "title": "Arr", "type": "tensor"}}, "required": ["arr"], "title": "Input", "type": "object"}, "output": {"dtype": "float32", "format": "numpy-array", "type": "tensor"}, "is_task": false}, {"name": "typed", "route": "/typed", "batchable": false, "input": {"properties": {"names": {"items": {"type": "string"}, "title": "Names", "type": "array"}, "scores": {"additionalProperties": {"type": "number"}, "title": "Scores", "type": "object"}, "maybe": {"default": null, "title": "Maybe", "type": "integer"}, "n": {"default": 3, "title": "N", "type": "integer"}}, "required": ["names", "scores"], "title": "Input", "type": "object"}, "output": {"items": {}, "type": "array"}, "is_task": false}, {"name": "upload", "route": "/upload", "batchable": false, "input": {"properties": {"f": {"content_type": "text/plain", "format": "text", "title": "F", "type": "file"}, "name": {"default": "x", "title": "Name", "type": "string"}}, "required": ["f"], "title": "Input", "type": "object"}, "output": {"type": "string"}, "is_task": false}], "description": "Covers every IO type.", "paths": {"/anything": {"mounted": false}, "/async_api": {"mounted": false}, "/bad_arg": {"mounted": false}, "/boom": {"mounted": false}, "/constrained": {"mounted": false}, "/count": {"mounted": false}, "/custom/path": {"mounted": false}, "/download": {"mounted": false}, "/download_ct": {"mounted": false}, "/file_root": {"mounted": false}, "/frame_columns": {"mounted": false}, "/frame_records": {"mounted": false}, "/image": {"mounted": false}, "/image_root": {"mounted": false}, "/mapping": {"mounted": false}, "/move": {"mounted": false}, "/ndarray": {"mounted": false}, "/nothing": {"mounted": false}, "/numbers": {"mounted": false}, "/people": {"mounted": false}, "/person": {"mounted": false}, "/raw_bytes": {"mounted": false}, "/scalars": {"mounted": false}, "/shout": {"mounted": false}, "/stream": {"mounted": false}, "/tensor": {"mounted": false}, "/typed": {"mounted": false}, "/upload": {"mounted": false}}}')

BML_SCHEMA_EDGE = json.loads('{"name": "CompatEdge", "type": "service", "routes": [{"name": "alpha", "route": "/v1/alpha", "batchable": false, "input": {"type": "integer", "root_input": true}, "output": {"$defs": {"Point": {"properties": {"x": {"title": "X", "type": "integer"}, "y": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": null, "title": "Y"}}, "required": ["x"], "title": "Point", "type": "object"}}, "items": {"$ref": "#/$defs/Point"}, "type": "array"}, "is_task": false}, {"name": "beta", "route": "/v1/renamed", "batchable": false, "input": {"properties": {"s": {"title": "S", "type": "string"}}, "required": ["s"], "title": "Input", "type": "object"}, "output": {"type": "string", "media_type": "text/csv"}, "is_task": false}, {"name": "bin_out", "route": "/v1/bin_out", "batchable": false, "input": {"properties": {}, "title": "Input", "type": "object"}, "output": {"format": "binary", "type": "string", "media_type": "application/octet-stream"}, "is_task": false}, {"name": "by_name", "route": "/v1/by_name", "batchable": false, "input": {"properties": {"d": {"additionalProperties": {"$ref": "#/$defs/Point"}, "title": "D", "type": "object"}}, "required": ["d"], "title": "Input", "type": "object"}, "output": {"$defs": {"Point": {"properties": {"x": {"title": "X", "type": "integer"}, "y": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": null, "title": "Y"}}, "required": ["x"], "title": "Point", "type": "object"}}, "additionalProperties": {"$ref": "#/$defs/Point"}, "type": "object"}, "is_task": false}, {"name": "csv_stream", "route": "/v1/csv_stream", "batchable": false, "input": {"properties": {}, "title": "Input", "type": "object"}, "output": {"type": "string", "is_stream": true, "media_type": "text/event-stream"}, "is_task": false}, {"name": "ct_file_root", "route": "/v1/ct_file_root", "batchable": false, "input": {"content_type": "text/plain", "format": "text", "type": "file", "root_input": true}, "output": {"type": "string"}, "is_task": false}, {"name": "floats", "route": "/v1/floats", "batchable": false, "input": {"items": {"type": "number"}, "type": "array", "root_input": true}, "output": {"items": {"type": "number"}, "type": "array"}, "is_task": false}, {"name": "img_root_bad", "route": "/v1/img_root_bad", "batchable": false, "input": {"format": "image", "pil": true, "type": "file", "root_input": true}, "output": {"type": "string"}, "is_task": false}, {"name": "titled", "route": "/v1/titled", "batchable": false, "input": {"properties": {"t_": {"properties": {"v": {"title": "V", "type": "integer"}}, "required": ["v"], "title": "Custom", "type": "object"}}, "required": ["t_"], "title": "Input", "type": "object"}, "output": {"properties": {"v": {"title": "V", "type": "integer"}}, "required": ["v"], "title": "Custom", "type": "object"}, "is_task": false}, {"name": "zeta", "route": "/v1/zeta", "batchable": false, "input": {"properties": {"x": {"title": "X", "type": "integer"}, "y": {"default": null, "title": "Y", "type": "integer"}}, "required": ["x"], "title": "PointIODescriptor", "type": "object", "root_input": true}, "output": {"properties": {"x": {"title": "X", "type": "integer"}, "y": {"default": null, "title": "Y", "type": "integer"}}, "required": ["x"], "title": "PointIODescriptor", "type": "object"}, "is_task": false}], "paths": {"/v1/alpha": {"mounted": false}, "/v1/renamed": {"mounted": false}, "/v1/bin_out": {"mounted": false}, "/v1/by_name": {"mounted": false}, "/v1/csv_stream": {"mounted": false}, "/v1/ct_file_root": {"mounted": false}, "/v1/floats": {"mounted": false}, "/v1/img_root_bad": {"mounted": false}, "/v1/titled": {"mounted": false}, "/v1/zeta": {"mounted": false}}}')

BML_DOCS_OPS_ALL = [['/healthz', 'get', None, None],
 ['/livez', 'get', None, None],
 ['/readyz', 'get', None, None],
 ['/metrics', 'get', None, None],
 ['/anything', 'post', 'CompatAll__anything', 'anything'],
 ['/async_api', 'post', 'CompatAll__async_api', 'async_api'],
 ['/bad_arg', 'post', 'CompatAll__bad_arg', 'bad_arg'],
 ['/boom', 'post', 'CompatAll__boom', 'boom'],
 ['/constrained', 'post', 'CompatAll__constrained', 'constrained'],
 ['/count', 'post', 'CompatAll__count', 'count'],
 ['/custom/path', 'post', 'CompatAll__custom', 'custom'],
 ['/download', 'post', 'CompatAll__download', 'download'],
 ['/download_ct', 'post', 'CompatAll__download_ct', 'download_ct'],
 ['/file_root', 'post', 'CompatAll__file_root', 'file_root'],
 ['/frame_columns', 'post', 'CompatAll__frame_columns', 'frame_columns'],
 ['/frame_records', 'post', 'CompatAll__frame_records', 'frame_records'],
 ['/image', 'post', 'CompatAll__image', 'image'],
 ['/image_root', 'post', 'CompatAll__image_root', 'image_root'],
 ['/mapping', 'post', 'CompatAll__mapping', 'mapping'],
 ['/move', 'post', 'CompatAll__move', 'move'],
 ['/ndarray', 'post', 'CompatAll__ndarray', 'ndarray'],
 ['/nothing', 'post', 'CompatAll__nothing', 'nothing'],
 ['/numbers', 'post', 'CompatAll__numbers', 'numbers'],
 ['/people', 'post', 'CompatAll__people', 'people'],
 ['/person', 'post', 'CompatAll__person', 'person'],
 ['/raw_bytes', 'post', 'CompatAll__raw_bytes', 'raw_bytes'],
 ['/scalars', 'post', 'CompatAll__scalars', 'scalars'],
 ['/shout', 'post', 'CompatAll__shout', 'shout'],
 ['/stream', 'post', 'CompatAll__stream', 'stream'],
 ['/tensor', 'post', 'CompatAll__tensor', 'tensor'],
 ['/typed', 'post', 'CompatAll__typed', 'typed'],
 ['/upload', 'post', 'CompatAll__upload', 'upload']]

BML_DOCS_OPS_EDGE = [['/healthz', 'get', None, None],
 ['/livez', 'get', None, None],
 ['/readyz', 'get', None, None],
 ['/metrics', 'get', None, None],
 ['/alpha', 'post', 'CompatEdge__alpha', 'alpha'],
 ['/renamed', 'post', 'CompatEdge__beta', 'beta'],
 ['/bin_out', 'post', 'CompatEdge__bin_out', 'bin_out'],
 ['/by_name', 'post', 'CompatEdge__by_name', 'by_name'],
 ['/csv_stream', 'post', 'CompatEdge__csv_stream', 'csv_stream'],
 ['/ct_file_root', 'post', 'CompatEdge__ct_file_root', 'ct_file_root'],
 ['/floats', 'post', 'CompatEdge__floats', 'floats'],
 ['/img_root_bad', 'post', 'CompatEdge__img_root_bad', 'img_root_bad'],
 ['/titled', 'post', 'CompatEdge__titled', 'titled'],
 ['/zeta', 'post', 'CompatEdge__zeta', 'zeta']]

BML_RESPONSES_ALL = {'scalars': {'status': 200,
             'ct': 'application/json',
             'cd': None,
             'body': b'{"s": "a", "i": 1, "f": 1.5, "b": true, "l": [1, "x"], "d": {"k": null}}'},
 'scalars_missing': {'status': 400,
                     'ct': 'application/json',
                     'cd': None,
                     'body': b'{"error":"5 validation error for Input","detail":[{"type":"missing","loc":["i"],"msg":"F'
                             b'ield required","url":"https://errors.pydantic.dev/2.14/v/missing"},{"type":"missing","lo'
                             b'c":["f"],"msg":"Field required","url":"https://errors.pydantic.dev/2.14/v/missing"},{"ty'
                             b'pe":"missing","loc":["b"],"msg":"Field required","url":"https://errors.pydantic.dev/2.14'
                             b'/v/missing"},{"type":"missing","loc":["l"],"msg":"Field required","url":"https://errors.'
                             b'pydantic.dev/2.14/v/missing"},{"type":"missing","loc":["d"],"msg":"Field required","url"'
                             b':"https://errors.pydantic.dev/2.14/v/missing"}]}'},
 'scalars_wrongtype': {'status': 400,
                       'ct': 'application/json',
                       'cd': None,
                       'body': b'{"error":"1 validation error for Input","detail":[{"type":"int_parsing","loc":["i"],'
                               b'"msg":"Input should be a valid integer, unable to parse string as an integer","url":'
                               b'"https://errors.pydantic.dev/2.14/v/int_parsing"}]}'},
 'scalars_malformed': {'status': 400,
                       'ct': 'application/json',
                       'cd': None,
                       'body': b'{"error":"1 validation error for Input","detail":[{"type":"json_invalid","loc":[],"m'
                               b'sg":"Invalid JSON: EOF while parsing a value at line 1 column 6","url":"https://erro'
                               b'rs.pydantic.dev/2.14/v/json_invalid"}]}'},
 'scalars_empty': {'status': 400,
                   'ct': 'application/json',
                   'cd': None,
                   'body': b'{"error":"6 validation error for Input","detail":[{"type":"missing","loc":["s"],"msg":"F'
                           b'ield required","url":"https://errors.pydantic.dev/2.14/v/missing"},{"type":"missing","lo'
                           b'c":["i"],"msg":"Field required","url":"https://errors.pydantic.dev/2.14/v/missing"},{"ty'
                           b'pe":"missing","loc":["f"],"msg":"Field required","url":"https://errors.pydantic.dev/2.14'
                           b'/v/missing"},{"type":"missing","loc":["b"],"msg":"Field required","url":"https://errors.'
                           b'pydantic.dev/2.14/v/missing"},{"type":"missing","loc":["l"],"msg":"Field required","url"'
                           b':"https://errors.pydantic.dev/2.14/v/missing"},{"type":"missing","loc":["d"],"msg":"Fiel'
                           b'd required","url":"https://errors.pydantic.dev/2.14/v/missing"}]}'},
 'typed': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'[["a"], {"x": 1.0}, null, 3]'},
 'typed_full': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'[[], {}, 4, 0]'},
 'constrained': {'status': 200, 'ct': 'text/plain; charset=utf-8', 'cd': None, 'body': b'abc:1:0.5'},
 'constrained_bad': {'status': 400,
                     'ct': 'application/json',
                     'cd': None,
                     'body': b'{"error":"3 validation error for Input","detail":[{"type":"string_too_short","loc":["q"]'
                             b',"msg":"String should have at least 2 characters","url":"https://errors.pydantic.dev/2.1'
                             b'4/v/string_too_short"},{"type":"less_than","loc":["k"],"msg":"Input should be less than '
                             b'10","url":"https://errors.pydantic.dev/2.14/v/less_than"},{"type":"less_than_equal","loc'
                             b'":["r"],"msg":"Input should be less than or equal to 1","url":"https://errors.pydantic.d'
                             b'ev/2.14/v/less_than_equal"}]}'},
 'person': {'status': 200,
            'ct': 'application/json',
            'cd': None,
            'body': b'{"name":"n","age":3,"address":{"city":"c","zip":null},"tags":[]}'},
 'person_bad': {'status': 400,
                'ct': 'application/json',
                'cd': None,
                'body': b'{"error":"3 validation error for Input","detail":[{"type":"string_too_short","loc":["p","nam'
                        b'e"],"msg":"String should have at least 1 character","url":"https://errors.pydantic.dev/2.14/'
                        b'v/string_too_short"},{"type":"greater_than_equal","loc":["p","age"],"msg":"Input should be g'
                        b'reater than or equal to 0","url":"https://errors.pydantic.dev/2.14/v/greater_than_equal"},{"'
                        b'type":"missing","loc":["p","address","city"],"msg":"Field required","url":"https://errors.py'
                        b'dantic.dev/2.14/v/missing"}]}'},
 'move': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'{"x":2.0,"y":3.5}'},
 'people': {'status': 200,
            'ct': 'application/json',
            'cd': None,
            'body': b'[{"name": "n", "age": 3, "address": {"city": "c", "zip": "1"}, "tags": []}]'},
 'shout': {'status': 200, 'ct': 'text/plain; charset=utf-8', 'cd': None, 'body': b'HELLO'},
 'shout_json': {'status': 200, 'ct': 'text/plain; charset=utf-8', 'cd': None, 'body': b'"HELLO"'},
 'count': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'42'},
 'count_bad': {'status': 400,
               'ct': 'application/json',
               'cd': None,
               'body': b'{"error":"1 validation error for intIODescriptor","detail":[{"type":"int_parsing","loc":["ro'
                       b'ot"],"msg":"Input should be a valid integer, unable to parse string as an integer","url":"ht'
                       b'tps://errors.pydantic.dev/2.14/v/int_parsing"}]}'},
 'numbers': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'[2.0, 5.0]'},
 'mapping': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'{"a": 2}'},
 'raw_bytes': {'status': 200, 'ct': 'text/plain; charset=utf-8', 'cd': None, 'body': b'cba'},
 'tensor': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'[[2.0, 4.0], [6.0, 8.0]]'},
 'tensor_bad': {'status': 400,
                'ct': 'application/json',
                'cd': None,
                'body': b'{"error":"1 validation error for Input","detail":[{"type":"value_error","loc":["arr"],"msg":'
                        b'"Value error, cannot reshape array of size 3 into shape (2,2)","url":"https://errors.pydanti'
                        b'c.dev/2.14/v/value_error"}]}'},
 'ndarray': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'[[2, 3], [4, 5]]'},
 'frame_records': {'status': 200,
                   'ct': 'application/json',
                   'cd': None,
                   'body': b'[{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]'},
 'frame_columns': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'{"a": [1, 2], "b": [3, 4]}'},
 'image': {'status': 200, 'ct': 'image/png', 'cd': None, 'body': None},
 'upload': {'status': 200, 'ct': 'text/plain; charset=utf-8', 'cd': None, 'body': b'dataN'},
 'upload_badct': {'status': 400,
                  'ct': 'application/json',
                  'cd': None,
                  'body': b'{"error":"1 validation error for Input","detail":[{"type":"value_error","loc":["f"],"msg'
                          b'":"Value error, Invalid content type application/octet-stream, expected text/plain","url'
                          b'":"https://errors.pydantic.dev/2.14/v/value_error"}]}'},
 'download': {'status': 200,
              'ct': 'text/plain; charset=utf-8',
              'cd': "attachment; filename*=utf-8''a%20b.txt",
              'body': b'hi'},
 'download_img': {'status': 200, 'ct': 'image/png', 'cd': 'inline; filename="p.png"', 'body': b'hi'},
 'download_unicode': {'status': 200,
                      'ct': 'text/plain; charset=utf-8',
                      'cd': "attachment; filename*=utf-8''%C3%A9t%C3%A9.txt",
                      'body': b'hi'},
 'download_noext': {'status': 200,
                    'ct': 'application/octet-stream',
                    'cd': 'attachment; filename="plain"',
                    'body': b'hi'},
 'file_root': {'status': 200, 'ct': 'text/plain; charset=utf-8', 'cd': None, 'body': b'rootdata'},
 'image_root': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'{"size": [3, 2]}'},
 'stream': {'status': 200, 'ct': 'text/event-stream; charset=utf-8', 'cd': None, 'body': b'chunk 0\nchunk 1\n'},
 'async_api': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'3'},
 'custom': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'7'},
 'boom': {'status': 500,
          'ct': 'application/json',
          'cd': None,
          'body': b'{"error":"An unexpected error has occurred, please check the server log."}'},
 'bad_arg': {'status': 400, 'ct': 'application/json', 'cd': None, 'body': b'[{"error":"nope"}]'},
 'anything_int': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'5'},
 'anything_list': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'[1, {"a": null}]'},
 'nothing': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'null'}}

BML_RESPONSES_EDGE = {'zeta': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'{"x":1,"y":null}'},
 'zeta_bad': {'status': 400,
              'ct': 'application/json',
              'cd': None,
              'body': b'{"error":"1 validation error for PointIODescriptor","detail":[{"type":"missing","loc":["x"],'
                      b'"msg":"Field required","url":"https://errors.pydantic.dev/2.14/v/missing"}]}'},
 'alpha': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'[{"x": 3, "y": null}]'},
 'by_name': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'{"a": {"x": 1, "y": null}}'},
 'titled': {'status': 200, 'ct': 'application/json', 'cd': None, 'body': b'{"v":1}'},
 'titled_bad': {'status': 400,
                'ct': 'application/json',
                'cd': None,
                'body': b'{"error":"1 validation error for Input","detail":[{"type":"missing","loc":["t_","v"],"msg":"'
                        b'Field required","url":"https://errors.pydantic.dev/2.14/v/missing"}]}'},
 'renamed': {'status': 200, 'ct': 'text/csv; charset=utf-8', 'cd': None, 'body': b'a,b'},
 'ct_file_root': {'status': 200, 'ct': 'text/plain; charset=utf-8', 'cd': None, 'body': b'abc'},
 'floats_bad': {'status': 400,
                'ct': 'application/json',
                'cd': None,
                'body': b'{"error":"1 validation error for ListIODescriptor","detail":[{"type":"float_parsing","loc":['
                        b'"root",1],"msg":"Input should be a valid number, unable to parse string as a number","url":"'
                        b'https://errors.pydantic.dev/2.14/v/float_parsing"}]}'},
 'bin_out': {'status': 200, 'ct': 'application/octet-stream', 'cd': None, 'body': b'\x00\x01'}}


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (3, 2), (255, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()
J = {"Content-Type": "application/json"}

CASES_ALL = [
    ("scalars", "/scalars", dict(json={"s": "a", "i": 1, "f": 1.5, "b": True, "l": [1, "x"], "d": {"k": None}})),
    ("scalars_missing", "/scalars", dict(json={"s": "a"})),
    ("scalars_wrongtype", "/scalars", dict(json={"s": "a", "i": "x", "f": 1.5, "b": True, "l": [], "d": {}})),
    ("scalars_malformed", "/scalars", dict(data=b'{"s": ', headers=J)),
    ("scalars_empty", "/scalars", dict(data=b"", headers=J)),
    ("typed", "/typed", dict(json={"names": ["a"], "scores": {"x": 1}})),
    ("typed_full", "/typed", dict(json={"names": [], "scores": {}, "maybe": 4, "n": 0})),
    ("constrained", "/constrained", dict(json={"q": "abc"})),
    ("constrained_bad", "/constrained", dict(json={"q": "a", "k": 10, "r": 2})),
    ("person", "/person", dict(json={"p": {"name": "n", "age": 3, "address": {"city": "c"}}})),
    ("person_bad", "/person", dict(json={"p": {"name": "", "age": -1, "address": {}}})),
    ("move", "/move", dict(json={"x": 1, "y": 2.5})),
    ("people", "/people", dict(json={"ps": [{"name": "n", "age": 3, "address": {"city": "c", "zip": "1"}}]})),
    ("shout", "/shout", dict(data=b"hello", headers={"Content-Type": "text/plain"})),
    ("shout_json", "/shout", dict(data=b'"hello"', headers=J)),
    ("count", "/count", dict(data=b"21", headers=J)),
    ("count_bad", "/count", dict(data=b'"x"', headers=J)),
    ("numbers", "/numbers", dict(json=[1, 2.5])),
    ("mapping", "/mapping", dict(json={"a": 1})),
    ("raw_bytes", "/raw_bytes", dict(json={"data": "abc"})),
    ("tensor", "/tensor", dict(json={"arr": [1, 2, 3, 4]})),
    ("tensor_bad", "/tensor", dict(json={"arr": [1, 2, 3]})),
    ("ndarray", "/ndarray", dict(json={"arr": [[1, 2], [3, 4]]})),
    ("frame_records", "/frame_records", dict(json={"df": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]})),
    ("frame_columns", "/frame_columns", dict(json={"df": {"a": [1, 2], "b": [3, 4]}})),
    ("image", "/image", dict(files={"img": ("i.png", PNG, "image/png")})),
    ("upload", "/upload", dict(files={"f": ("f.txt", b"data", "text/plain")}, data={"name": '"N"'})),
    ("upload_badct", "/upload", dict(files={"f": ("f.bin", b"data", "application/octet-stream")})),
    ("download", "/download", dict(json={"name": "a b.txt"})),
    ("download_img", "/download", dict(json={"name": "p.png"})),
    ("download_unicode", "/download", dict(json={"name": "été.txt"})),
    ("download_noext", "/download", dict(json={"name": "plain"})),
    ("download_ct", "/download_ct", dict(json={"content": "zz"})),
    ("file_root", "/file_root", dict(data=b"rootdata", headers={"Content-Type": "text/plain"})),
    ("image_root", "/image_root", dict(data=PNG, headers={"Content-Type": "image/png"})),
    ("stream", "/stream", dict(json={"n": 2})),
    ("async_api", "/async_api", dict(json={"a": 1})),
    ("custom", "/custom/path", dict(json={"v": 7})),
    ("boom", "/boom", dict(json={})),
    ("bad_arg", "/bad_arg", dict(json={})),
    ("anything_str", "/anything", dict(json={"x": "s"})),
    ("anything_int", "/anything", dict(json={"x": 5})),
    ("anything_list", "/anything", dict(json={"x": [1, {"a": None}]})),
    ("nothing", "/nothing", dict(json={})),
    ("notfound", "/nope", dict(json={})),
]

CASES_EDGE = [
    ("zeta", "/v1/zeta", dict(json={"x": 1})),
    ("zeta_bad", "/v1/zeta", dict(json={"y": 1})),
    ("alpha", "/v1/alpha", dict(data=b"3", headers=J)),
    ("alpha_default", "/v1/alpha", dict(data=b"", headers=J)),
    ("alpha_malformed", "/v1/alpha", dict(data=b"{", headers=J)),
    ("by_name", "/v1/by_name", dict(json={"d": {"a": {"x": 1}}})),
    ("titled", "/v1/titled", dict(json={"t_": {"v": 1}})),
    ("titled_bad", "/v1/titled", dict(json={"t_": {}})),
    ("renamed", "/v1/renamed", dict(json={"s": "a,b"})),
    ("csv_stream", "/v1/csv_stream", dict(json={})),
    ("ct_file_root", "/v1/ct_file_root", dict(data=b"abc", headers={"Content-Type": "text/plain"})),
    ("ct_file_root_bad", "/v1/ct_file_root", dict(data=b"abc", headers={"Content-Type": "image/png"})),
    ("img_root_bad", "/v1/img_root_bad", dict(data=b"notanimage", headers={"Content-Type": "image/png"})),
    ("floats_bad", "/v1/floats", dict(json=[1, "x"])),
    ("bin_out", "/v1/bin_out", dict(json={})),
    ("noprefix", "/zeta", dict(json={"x": 1})),
]

_PYDANTIC_URL = re.compile(rb"https://errors\.pydantic\.dev/[0-9.]+/")


def _norm(body: bytes) -> bytes:
    return _PYDANTIC_URL.sub(b"https://errors.pydantic.dev/X/", body)


@pytest.fixture(scope="module")
def srv_all(module_server_factory):
    return module_server_factory("compat_all.py:CompatAll", "--workers", "1")


@pytest.fixture(scope="module")
def srv_edge(module_server_factory):
    return module_server_factory("compat_edge.py:CompatEdge", "--workers", "1")


def _post(srv, path, kw):
    import requests

    return requests.post(srv.url + path, timeout=30, **kw)


# --------------------------------------------------------------------------- documents


@pytest.mark.parametrize("which", ["all", "edge"])
def test_schema_json_identical(srv_all, srv_edge, which):
    srv, expected = (srv_all, BML_SCHEMA_ALL) if which == "all" else (srv_edge, BML_SCHEMA_EDGE)
    r = srv.get("/schema.json")
    assert r.status_code == 200
    got = r.json()
    if which == "edge":  # kept extension: ContentType on the streamed item type
        expected = json.loads(json.dumps(expected))
        for route in expected["routes"]:
            if route["name"] == "csv_stream":
                route["output"]["media_type"] = "text/plain"
    # same keys, same order (routes sorted by attribute name, like BentoML's dir())
    assert json.dumps(got) == json.dumps(expected)


def test_schema_specifics(srv_all):
    routes = {r["name"]: r for r in srv_all.get("/schema.json").json()["routes"]}
    assert routes["shout"]["input"] == {"type": "string", "root_input": True}
    assert routes["file_root"]["input"] == {"format": "binary", "type": "file", "root_input": True}
    assert routes["move"]["output"]["title"] == "MovedIODescriptor"
    # Optional[int] in an input: first anyOf alternative wins; list[Model] output keeps $defs
    assert routes["typed"]["input"]["properties"]["maybe"] == {"default": None, "title": "Maybe", "type": "integer"}
    assert "$defs" in routes["people"]["output"]


@pytest.mark.parametrize("which", ["all", "edge"])
def test_docs_json_paths_and_operation_ids(srv_all, srv_edge, which):
    if which == "all":
        r, expected = srv_all.get("/docs.json"), BML_DOCS_OPS_ALL
    else:
        r, expected = srv_edge.get("/v1/docs.json"), BML_DOCS_OPS_EDGE
    doc = r.json()
    got = [[p, m, o.get("operationId"), o.get("x-bentoml-name")] for p, v in doc["paths"].items() for m, o in v.items()]
    assert got == expected


# --------------------------------------------------------------------------- responses


def _check(r, exp):
    assert r.status_code == exp["status"], r.content
    assert r.headers.get("content-type") == exp["ct"]
    assert r.headers.get("content-disposition") == exp["cd"]
    if exp["body"] is None:  # an image: same pixels
        from PIL import Image

        img = Image.open(io.BytesIO(r.content))
        assert img.format.lower() == exp["ct"].split("/", 1)[1]
    else:
        assert _norm(r.content) == _norm(exp["body"])


@pytest.mark.parametrize("case", [c for c in CASES_ALL if c[0] in BML_RESPONSES_ALL], ids=lambda c: c[0])
def test_responses_all(srv_all, case):
    cid, path, kw = case
    _check(_post(srv_all, path, kw), BML_RESPONSES_ALL[cid])


@pytest.mark.parametrize("case", [c for c in CASES_EDGE if c[0] in BML_RESPONSES_EDGE], ids=lambda c: c[0])
def test_responses_edge(srv_edge, case):
    cid, path, kw = case
    _check(_post(srv_edge, path, kw), BML_RESPONSES_EDGE[cid])


def test_file_output_headers(srv_all):
    r = _post(srv_all, "/download", dict(json={"name": "a b.txt"}))
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-disposition"] == "attachment; filename*=utf-8''a%20b.txt"
    r = _post(srv_all, "/download", dict(json={"name": "p.png"}))
    assert r.headers["content-disposition"] == 'inline; filename="p.png"'
    # BentoML: a random temp name; the guessed type wins over the declared one
    r = _post(srv_all, "/download_ct", dict(json={"content": "zz"}))
    assert r.headers["content-type"] == "application/octet-stream"
    assert re.fullmatch(r'attachment; filename="[^"]+\.bin"', r.headers["content-disposition"])


# --------------------------------------------------------------------------- deliberate differences


def test_kept_untyped_str_is_text(srv_all):
    r = _post(srv_all, "/anything", dict(json={"x": "s"}))
    assert (r.status_code, r.headers["content-type"], r.content) == (200, "text/plain; charset=utf-8", b"s")


def test_kept_root_input_errors_are_400(srv_edge):
    for data in (b"{", b""):
        r = _post(srv_edge, "/v1/alpha", dict(data=data, headers=J))
        assert r.status_code == 400
        body = r.json()
        assert body["error"] == "1 validation error for intIODescriptor"
        assert body["detail"][0]["type"] == "json_invalid" and body["detail"][0]["loc"] == ["root"]
    r = _post(srv_edge, "/v1/img_root_bad", dict(data=b"notanimage", headers={"Content-Type": "image/png"}))
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["root"]
    r = _post(srv_edge, "/v1/ct_file_root", dict(data=b"abc", headers={"Content-Type": "image/png"}))
    assert r.status_code == 400
    assert "Invalid content type image/png, expected text/plain" in r.json()["detail"][0]["msg"]


def test_kept_item_content_type_for_streams(srv_edge):
    r = _post(srv_edge, "/v1/csv_stream", dict(json={}))
    assert r.status_code == 200 and r.headers["content-type"] == "text/plain" and r.content == b"a,b\n"


def test_kept_not_found_from_c_router(srv_edge):
    r = _post(srv_edge, "/zeta", dict(json={"x": 1}))
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
